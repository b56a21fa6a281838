from .conv import ConvNorm
from .norm import convert_to_frozen_bn, get_norm

__all__ = ["ConvNorm", "get_norm", "convert_to_frozen_bn"]
