from .c4 import c4_split
from .resnet import (BasicBlock, BottleneckBlock, ResNet, Stage, build_resnet_stages, init_weights, make_stage,
                     resnet_spec)

__all__ = ["BasicBlock", "BottleneckBlock", "ResNet", "Stage", "build_resnet_stages", "c4_split", "init_weights",
           "make_stage", "resnet_spec"]
