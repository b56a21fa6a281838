"""The ResNet paper's C4 split: a shared stride-16 trunk (stem..res4) and res5 as the RoI head.

conv1..conv4_x run once per image; RoI pooling happens on res4, and conv5_x runs per region
(its first block has stride 2, so 14x14 pooled features become 7x7).
"""
from __future__ import annotations

import torch.nn as nn

from detection.layers import convert_to_frozen_bn

from .resnet import ResNet, build_resnet_stages, init_weights, resnet_kwargs_from_cfg


def build_c4_backbone(cfg) -> tuple[ResNet, nn.Sequential]:
    """(trunk, res5) from ``cfg.MODEL.RESNETS``.

    trunk: a ResNet with stages res2..res4 whose forward returns {"res4": (B, C4, H/16, W/16)}.
    res5: an nn.Sequential of blocks mapping (R, C4, h, w) to (R, C5, h/2, w/2).
    ``FREEZE_AT`` k freezes the stem and res2..res{k}; 5 freezes res5 as well.
    """
    stem, stages = build_resnet_stages(num_stages=4, **resnet_kwargs_from_cfg(cfg))
    trunk = ResNet(stem, stages[:3], out_features=["res4"])
    res5 = stages[3]
    init_weights(trunk, cfg.MODEL.RESNETS.ZERO_INIT_RESIDUAL)
    init_weights(res5, cfg.MODEL.RESNETS.ZERO_INIT_RESIDUAL)
    freeze_at = cfg.MODEL.RESNETS.FREEZE_AT
    if not 0 <= freeze_at <= 5:
        raise ValueError(f"MODEL.RESNETS.FREEZE_AT must be in 0..5; got {freeze_at}")
    trunk.freeze(min(freeze_at, 4))
    if freeze_at == 5:
        for p in res5.parameters():
            p.requires_grad_(False)
        convert_to_frozen_bn(res5)
    return trunk, res5
