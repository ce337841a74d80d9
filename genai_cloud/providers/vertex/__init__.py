"""vertex: the pure render and the provider (``render.py``), its operations (``ops.py``)."""

from .render import VertexProvider

__all__ = ["VertexProvider"]
