"""sagemaker: the provider object (``provider.py``), its pure render (``render.py``) and its operations (``ops.py``)."""

from .provider import SageMakerProvider

__all__ = ["SageMakerProvider"]
