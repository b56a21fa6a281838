"""Shared test helper: a ResNet config and random images, for the ResNet and C4 backbone tests."""
import torch

from detection.config import get_default_config


def resnet_cfg(**resnets):
    cfg = get_default_config()
    r = cfg.MODEL.RESNETS
    r.NORM, r.STRIDE_IN_1X1, r.FREEZE_AT = "BN", False, 0
    for k, v in resnets.items():
        setattr(r, k, v)
    return cfg


def rand_image(h=64, w=64, b=1, seed=0):
    return torch.randn(b, 3, h, w, generator=torch.Generator().manual_seed(seed))
