"""The head that scores and regresses anchors: the RPN's (one class, "object") and the localizer's
(K classes, per-class regression, PCR).

Shape shorthand: B images, C input channels, H x W feature cells, A anchors per cell, K classes,
N = H * W * A anchors in the anchor generator's order (row-major cells, then a cell's anchors).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class AnchorHead(nn.Module):
    """3x3 conv + ReLU, then sibling 1x1 convs: K logits and 4K deltas per anchor.

    Each logit is a binary logistic "this anchor is / is not an object (of class k)"; each class has
    its own box regressor. Channel layout: logits ``a * K + k``, deltas ``(a * K + k) * 4 + j``
    (anchor a, class k, coordinate j): anchor-major, then class, then (dx, dy, dw, dh). With K = 1
    this is the RPN head of Faster R-CNN (Detectron2's parameter names).
    """

    def __init__(self, in_channels: int, num_anchors: int, num_classes: int = 1, head_channels: int = 0):
        super().__init__()
        head_channels = head_channels or in_channels
        self.num_anchors, self.num_classes = num_anchors, num_classes
        self.conv = nn.Conv2d(in_channels, head_channels, 3, padding=1)
        self.objectness_logits = nn.Conv2d(head_channels, num_anchors * num_classes, 1)
        self.anchor_deltas = nn.Conv2d(head_channels, num_anchors * num_classes * 4, 1)
        for layer in (self.conv, self.objectness_logits, self.anchor_deltas):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C', H, W) after the 3x3 conv and ReLU."""
        return F.relu(self.conv(x))

    def predict(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C', H, W) head features -> logits (B, N, K), deltas (B, N, K, 4)."""
        b, _, h, w = t.shape
        a, k = self.num_anchors, self.num_classes
        logits = self.objectness_logits(t).view(b, a, k, h, w).permute(0, 3, 4, 1, 2).reshape(b, h * w * a, k)
        deltas = self.anchor_deltas(t).view(b, a, k, 4, h, w).permute(0, 4, 5, 1, 2, 3).reshape(b, h * w * a, k, 4)
        return logits, deltas

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) -> logits (B, N, K), deltas (B, N, K, 4)."""
        return self.predict(self.features(x))

    def _at(self, t: torch.Tensor, image_idx: torch.Tensor, anchor_idx: torch.Tensor):
        """Features (P, C') under anchors ``anchor_idx`` (indices into N) of images ``image_idx``,
        and each anchor's index within its cell."""
        a = self.num_anchors
        return t.flatten(2)[image_idx, :, anchor_idx // a], anchor_idx % a

    def logits_at(self, t: torch.Tensor, image_idx: torch.Tensor, anchor_idx: torch.Tensor,
                  class_idx: torch.Tensor) -> torch.Tensor:
        """(P,) logits of class ``class_idx[p]`` at anchor ``anchor_idx[p]`` of image ``image_idx[p]``,
        from head features ``t`` (B, C', H, W): the 1x1 conv evaluated only where a loss needs it
        (for K = 1000 the dense layer would cost as much as the trunk)."""
        f, a = self._at(t, image_idx, anchor_idx)
        w = self.objectness_logits.weight.view(self.num_anchors, self.num_classes, -1)[a, class_idx]
        b = self.objectness_logits.bias.view(self.num_anchors, self.num_classes)[a, class_idx]
        return (f * w).sum(1) + b

    def deltas_at(self, t: torch.Tensor, image_idx: torch.Tensor, anchor_idx: torch.Tensor,
                  class_idx: torch.Tensor) -> torch.Tensor:
        """(P, 4) deltas of class ``class_idx[p]``'s regressor at the given anchors (see ``logits_at``)."""
        f, a = self._at(t, image_idx, anchor_idx)
        w = self.anchor_deltas.weight.view(self.num_anchors, self.num_classes, 4, -1)[a, class_idx]
        b = self.anchor_deltas.bias.view(self.num_anchors, self.num_classes, 4)[a, class_idx]
        return torch.einsum("pc,pjc->pj", f, w) + b
