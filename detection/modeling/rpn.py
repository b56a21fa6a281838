"""Region Proposal Network on the stride-16 trunk feature map, batched over images."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import batched_nms, box_iou

from detection.structures import ImageList

from .anchors import AnchorGenerator
from .box_coder import BoxCoder
from .losses import box_regression_loss
from .matcher import Matcher
from .sampler import sample_balanced


class RPNHead(nn.Module):
    """3x3 conv + ReLU, then sibling 1x1 convs: ``num_anchors`` objectness logits and 4 deltas each."""

    def __init__(self, in_channels: int, num_anchors: int, head_channels: int = 0):
        super().__init__()
        head_channels = head_channels or in_channels
        self.conv = nn.Conv2d(in_channels, head_channels, 3, padding=1)
        self.objectness_logits = nn.Conv2d(head_channels, num_anchors, 1)
        self.anchor_deltas = nn.Conv2d(head_channels, num_anchors * 4, 1)
        for layer in (self.conv, self.objectness_logits, self.anchor_deltas):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) -> logits (B, A, H, W), deltas (B, 4A, H, W)."""
        t = F.relu(self.conv(x))
        return self.objectness_logits(t), self.anchor_deltas(t)


def flatten_predictions(logits: torch.Tensor, deltas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, A, H, W), (B, A*d, H, W) -> (B, H*W*A), (B, H*W*A, d): the anchor generator's order."""
    b, a, h, w = logits.shape
    logits = logits.permute(0, 2, 3, 1).reshape(b, -1)
    d = deltas.shape[1] // a
    deltas = deltas.view(b, a, d, h, w).permute(0, 3, 4, 1, 2).reshape(b, -1, d)
    return logits, deltas


def clip_boxes(boxes: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """Clip (..., 4) xyxy boxes to per-box image sizes (..., 2) given as (h, w)."""
    w = sizes[..., 1:2].to(boxes.dtype)
    h = sizes[..., 0:1].to(boxes.dtype)
    x = torch.minimum(boxes[..., 0::2].clamp(min=0), w)
    y = torch.minimum(boxes[..., 1::2].clamp(min=0), h)
    return torch.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), dim=-1)


def first_k_per_group(group: torch.Tensor, k: int, num_groups: int) -> torch.Tensor:
    """Indices into ``group`` (already sorted by priority) of the first ``k`` members of each group,
    ordered by group, then priority."""
    order = torch.sort(group, stable=True).indices
    counts = torch.bincount(group, minlength=num_groups)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(group.numel(), device=group.device) - torch.repeat_interleave(starts, counts)
    return order[rank < k]


def anchors_inside(anchors: torch.Tensor, sizes: torch.Tensor, boundary_thresh: float) -> torch.Tensor:
    """(B, N) mask of anchors usable for training on each image.

    Anchors centred in the batch padding never are. With ``boundary_thresh >= 0`` (py-faster-rcnn
    used 0) anchors crossing the image border by more than that are ignored too.
    """
    h = sizes[:, 0:1].to(anchors.dtype)
    w = sizes[:, 1:2].to(anchors.dtype)
    cx = (anchors[:, 0] + anchors[:, 2]) * 0.5
    cy = (anchors[:, 1] + anchors[:, 3]) * 0.5
    inside = (cx[None] < w) & (cy[None] < h)
    if boundary_thresh >= 0:
        t = boundary_thresh
        inside &= (anchors[None, :, 0] >= -t) & (anchors[None, :, 1] >= -t)
        inside &= (anchors[None, :, 2] <= w + t) & (anchors[None, :, 3] <= h + t)
    return inside


class RPN(nn.Module):
    """Proposals from anchors; in training also the objectness and box losses.

    Proposals are boxes (xyxy, resized-input pixels) clipped to each image, after pre-NMS top-k,
    NMS and post-NMS top-k per image; (train, test) values are picked by ``self.training``.
    """

    def __init__(self, head: RPNHead, anchor_generator: AnchorGenerator, box_coder: BoxCoder, matcher: Matcher, *,
                 batch_size_per_image: int = 256, positive_fraction: float = 0.5, smooth_l1_beta: float = 0.0,
                 loss_weight: float = 1.0, nms_thresh: float = 0.7, pre_nms_topk=(12000, 6000),
                 post_nms_topk=(2000, 300), min_size: float = 0.0, boundary_thresh: float = -1.0):
        super().__init__()
        self.head = head
        self.anchor_generator = anchor_generator
        self.box_coder = box_coder
        self.matcher = matcher
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.smooth_l1_beta = smooth_l1_beta
        self.loss_weight = loss_weight
        self.nms_thresh = nms_thresh
        self.pre_nms_topk = pre_nms_topk
        self.post_nms_topk = post_nms_topk
        self.min_size = min_size
        self.boundary_thresh = boundary_thresh

    def forward(self, images: ImageList, features: torch.Tensor, gt_boxes: list[torch.Tensor] | None = None):
        """Returns (proposals: list of (P_i, 4), losses: dict; empty unless training)."""
        logits, deltas = self.head(features)
        anchors = self.anchor_generator(tuple(features.shape[-2:]))
        logits, deltas = flatten_predictions(logits, deltas)
        sizes = images.image_sizes_tensor()
        proposals = self.find_proposals(anchors, logits.detach(), deltas.detach(), sizes)
        losses = {}
        if self.training:
            if gt_boxes is None:
                raise ValueError("RPN in training mode needs ground-truth boxes")
            losses = self.losses(anchors, logits, deltas, gt_boxes, sizes)
        return proposals, losses

    @torch.no_grad()
    def find_proposals(self, anchors, logits, deltas, sizes) -> list[torch.Tensor]:
        b, n = logits.shape
        pre = min(self.pre_nms_topk[0 if self.training else 1], n)
        post = self.post_nms_topk[0 if self.training else 1]
        scores, idx = logits.topk(pre, dim=1)  # sorted, per image
        boxes = self.box_coder.decode(deltas.gather(1, idx[..., None].expand(-1, -1, 4)).reshape(-1, 4),
                                      anchors[idx.reshape(-1)]).view(b, pre, 4)
        boxes = clip_boxes(boxes, sizes[:, None, :])
        ws, hs = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
        keep = torch.isfinite(boxes).all(-1) & torch.isfinite(scores) & (ws > self.min_size) & (hs > self.min_size)
        if self.training and not torch.isfinite(boxes).all():
            raise FloatingPointError("RPN predicted non-finite boxes in training; the loss has diverged")
        image_idx = torch.arange(b, device=boxes.device)[:, None].expand(b, pre)[keep]
        boxes, scores = boxes[keep], scores[keep]
        kept = batched_nms(boxes, scores, image_idx, self.nms_thresh)  # one NMS per image, by score
        kept = kept[first_k_per_group(image_idx[kept], post, b)]
        counts = torch.bincount(image_idx[kept], minlength=b).tolist()
        return list(boxes[kept].split(counts))

    def label_anchors(self, anchors, gt_boxes, sizes):
        """(B, N) labels (1 positive, 0 negative, -1 ignored, sampled) and (B, N, 4) regression targets."""
        inside = anchors_inside(anchors, sizes, self.boundary_thresh)
        labels, targets = [], []
        for gt, usable in zip(gt_boxes, inside):  # gt counts differ per image
            matched, lab = self.matcher(box_iou(gt, anchors))
            lab = lab.long()
            lab[~usable] = -1
            pos, neg = sample_balanced(lab, self.batch_size_per_image, self.positive_fraction, bg_label=0)
            sampled = torch.full_like(lab, -1)
            sampled[pos], sampled[neg] = 1, 0
            labels.append(sampled)
            targets.append(self.box_coder.encode(anchors, gt[matched]) if len(gt) else torch.zeros_like(anchors))
        return torch.stack(labels), torch.stack(targets)

    def losses(self, anchors, logits, deltas, gt_boxes, sizes) -> dict[str, torch.Tensor]:
        labels, targets = self.label_anchors(anchors, gt_boxes, sizes)
        valid, pos = labels >= 0, labels == 1
        normalizer = self.batch_size_per_image * logits.shape[0]
        loss_cls = F.binary_cross_entropy_with_logits(logits[valid], labels[valid].float(), reduction="sum")
        loss_loc = box_regression_loss(deltas[pos], targets[pos], self.smooth_l1_beta)
        return {"loss_rpn_cls": loss_cls * self.loss_weight / normalizer,
                "loss_rpn_loc": loss_loc * self.loss_weight / normalizer}
