"""sagemaker: the pure render and the provider (``render.py``), its operations (``ops.py``)."""

from .render import SageMakerProvider

__all__ = ["SageMakerProvider"]
