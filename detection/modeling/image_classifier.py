"""The localizer's image-level classifier: which classes an image shows."""
from __future__ import annotations

import torch
import torch.nn as nn


class ImageClassifier(nn.Module):
    """res5 on the whole stride-16 map, masked global average pooling, linear -> (B, K) logits."""

    def __init__(self, res5: nn.Module, out_channels: int, num_classes: int, stride: int = 32):
        super().__init__()
        self.res5 = res5
        self.stride = stride  # of res5's output in input pixels
        self.linear = nn.Linear(out_channels, num_classes)
        nn.init.normal_(self.linear.weight, std=0.01)
        nn.init.zeros_(self.linear.bias)

    def forward(self, features: torch.Tensor, image_sizes: torch.Tensor) -> torch.Tensor:
        """features (B, C4, H, W); image_sizes (B, 2) of (h, w) in input pixels -> logits (B, K).

        Only res5 cells that see the image (not only batch padding) are averaged, so a padded image
        gets (nearly) the same prediction as alone."""
        x = self.res5(features)
        hh, ww = x.shape[-2:]
        valid_h = (-(-image_sizes[:, 0] // self.stride)).clamp(1, hh)
        valid_w = (-(-image_sizes[:, 1] // self.stride)).clamp(1, ww)
        ys = torch.arange(hh, device=x.device)
        xs = torch.arange(ww, device=x.device)
        mask = (ys[None, :, None] < valid_h[:, None, None]) & (xs[None, None, :] < valid_w[:, None, None])
        mask = mask[:, None].to(x.dtype)
        pooled = (x * mask).sum((2, 3)) / mask.sum((2, 3))
        return self.linear(pooled)
