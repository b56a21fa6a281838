from .build import META_ARCHITECTURES, build_c4_backbone, build_model, build_resnet
from .meta_arch import FasterRCNN, ImageModel, PCRLocalizer

__all__ = ["META_ARCHITECTURES", "FasterRCNN", "ImageModel", "PCRLocalizer", "build_c4_backbone", "build_model",
           "build_resnet"]
