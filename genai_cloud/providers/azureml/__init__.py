"""azureml: the pure render and the provider (``render.py``), its operations (``ops.py``)."""

from .render import AzureMLProvider

__all__ = ["AzureMLProvider"]
