"""The ResNet paper's C4 split: a shared stride-16 trunk (stem..res4) and res5 as the RoI head.

conv1..conv4_x run once per image; RoI pooling happens on res4, and conv5_x runs per region
(its first block has stride 2, so 14x14 pooled features become 7x7).
"""
from __future__ import annotations

import torch.nn as nn

from detection.layers import convert_to_frozen_bn

from .resnet import ResNet, Stage, init_weights


def c4_split(stem: nn.Module, stages: list[Stage], *, freeze_at: int = 2,
             zero_init_residual: bool = False) -> tuple[ResNet, Stage]:
    """(trunk, res5) from the stem and the four stages res2..res5, initialised and frozen.

    trunk: a ResNet with stages res2..res4 whose forward returns {"res4": (B, C4, H/16, W/16)};
    ``trunk.out_channels`` is C4 and ``trunk.stride`` 16.
    res5: the last :class:`Stage`, mapping (R, C4, h, w) to (R, C5, h/2, w/2) (``res5.out_channels``
    C5, ``res5.stride`` 2; 1 with a dilated res5).
    ``freeze_at`` k freezes the stem and res2..res{k}; 5 freezes res5 as well.
    """
    if not 0 <= freeze_at <= 5:
        raise ValueError(f"MODEL.RESNETS.FREEZE_AT must be in 0..5; got {freeze_at}")
    trunk = ResNet(stem, stages[:3], out_features=["res4"])
    res5 = stages[3]
    init_weights(trunk, zero_init_residual)
    init_weights(res5, zero_init_residual)
    trunk.freeze(min(freeze_at, 4))
    if freeze_at == 5:
        for p in res5.parameters():
            p.requires_grad_(False)
        convert_to_frozen_bn(res5)
    return trunk, res5
