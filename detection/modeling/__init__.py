from .build import META_ARCHITECTURES, build_model
from .faster_rcnn import FasterRCNN

__all__ = ["META_ARCHITECTURES", "FasterRCNN", "build_model"]
