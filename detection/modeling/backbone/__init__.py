from .c4 import build_c4_backbone
from .resnet import (BasicBlock, BottleneckBlock, ResNet, build_resnet, build_resnet_stages, init_weights,
                     resnet_spec)

__all__ = ["BasicBlock", "BottleneckBlock", "ResNet", "build_c4_backbone", "build_resnet", "build_resnet_stages",
           "init_weights", "resnet_spec"]
