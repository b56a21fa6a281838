"""Normalisation layers by name: FrozenBN (the detection default), BN, SyncBN, GN."""
from __future__ import annotations

import torch.nn as nn
from torchvision.ops.misc import FrozenBatchNorm2d

NORMS = ("FrozenBN", "BN", "SyncBN", "GN")


def get_norm(name: str, channels: int, gn_groups: int = 32) -> nn.Module:
    """A norm layer for ``channels`` feature maps.

    FrozenBN keeps ImageNet statistics and affine parameters as buffers: detection batches are
    too small (1-2 images per GPU) for BatchNorm statistics to be estimated, as the ResNet paper
    notes for its detector.
    """
    if name == "FrozenBN":
        return FrozenBatchNorm2d(channels, eps=1e-5)
    if name == "BN":
        return nn.BatchNorm2d(channels)
    if name == "SyncBN":
        return nn.SyncBatchNorm(channels)
    if name == "GN":
        return nn.GroupNorm(gn_groups, channels)
    raise ValueError(f"unknown norm {name!r}; expected one of {NORMS}")


def convert_to_frozen_bn(module: nn.Module) -> nn.Module:
    """Replace every (Sync)BatchNorm in ``module`` with a FrozenBatchNorm2d holding its statistics."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps)
        if module.affine:
            frozen.weight.copy_(module.weight.detach())
            frozen.bias.copy_(module.bias.detach())
        if module.track_running_stats:
            frozen.running_mean.copy_(module.running_mean)
            frozen.running_var.copy_(module.running_var)
        return frozen
    for name, child in module.named_children():
        new = convert_to_frozen_bn(child)
        if new is not child:
            setattr(module, name, new)
    return module
