"""Shared test helper: norm layers with random statistics and affines."""
import torch
import torch.nn as nn
from torchvision.ops.misc import FrozenBatchNorm2d


def randomise_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm/FrozenBatchNorm random running statistics and affines (in place), so that
    features are not near zero-mean unit-variance and a wrong norm or layout changes the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model
