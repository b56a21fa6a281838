"""Meta-architectures: the shared base (normalise, batch, targets, test-time grouping) and the models."""
from .base import ImageModel
from .faster_rcnn import FasterRCNN, detector_postprocess
from .pcr import PCRLocalizer

__all__ = ["FasterRCNN", "ImageModel", "PCRLocalizer", "detector_postprocess"]
