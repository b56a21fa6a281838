"""Meta-architectures: the shared base (normalise, batch, targets, test-time grouping), the models, and
the multi-view wrapper (test-time augmentation, tiles)."""
from .base import ImageModel
from .faster_rcnn import FasterRCNN, detector_postprocess
from .multi_view import MultiViewDetector
from .pcr import PCRLocalizer

__all__ = ["FasterRCNN", "ImageModel", "MultiViewDetector", "PCRLocalizer", "detector_postprocess"]
