"""Fold a frozen (or eval-mode) BatchNorm into the convolution before it, for inference.

``y = (conv(x) - mean) / sqrt(var + eps) * gamma + beta`` is one convolution with weight
``w * s`` and bias ``(b - mean) * s + beta``, ``s = gamma / sqrt(var + eps)``: the same output up
to float rounding, one pass over the feature map less per convolution (the norm's multiply and add).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torchvision.ops.misc import FrozenBatchNorm2d

from detection.layers import ConvNorm


def _scale_shift(norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(scale, shift) of a norm that is a fixed per-channel affine map, else None (GN, a BN in training)."""
    if isinstance(norm, FrozenBatchNorm2d):
        scale = norm.weight * (norm.running_var + norm.eps).rsqrt()
        return scale, norm.bias - norm.running_mean * scale
    if isinstance(norm, nn.modules.batchnorm._BatchNorm) and not norm.training and norm.track_running_stats:
        scale = (norm.running_var + norm.eps).rsqrt()
        shift = -norm.running_mean * scale
        if norm.affine:
            scale, shift = scale * norm.weight, shift * norm.weight + norm.bias
        return scale, shift
    return None


@torch.no_grad()
def fold_batchnorm(module: nn.Module) -> int:
    """Fold, in place, the norm of every ``ConvNorm`` in ``module`` whose norm is a FrozenBatchNorm2d
    or a BatchNorm in eval mode (GroupNorm and training-mode BN are left as they are). Returns how
    many were folded. Inference only: the folded convolution has a bias and no ``norm``."""
    folded = 0
    for conv in module.modules():
        if not isinstance(conv, ConvNorm) or conv.norm is None:
            continue
        affine = _scale_shift(conv.norm)
        if affine is None:
            continue
        scale, shift = (t.to(conv.weight.dtype) for t in affine)
        weight = conv.weight * scale.view(-1, *([1] * (conv.weight.dim() - 1)))
        bias = shift if conv.bias is None else conv.bias * scale + shift
        conv.weight = nn.Parameter(weight, requires_grad=False)
        conv.bias = nn.Parameter(bias, requires_grad=False)
        conv.norm = None
        folded += 1
    return folded
