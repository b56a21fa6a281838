"""Region Proposal Network on the stride-16 trunk feature map, batched over images.

Shape shorthand: B images, N anchors on the feature map (H * W * A), P_i proposals of image i.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import batched_nms

from detection.structures import ImageList

from .anchor_head import AnchorHead
from .anchor_labeling import label_anchors
from .anchors import AnchorGenerator
from .box_coder import BoxCoder
from .box_ops import clip_boxes, first_k_per_group
from .losses import box_regression_loss
from .matcher import Matcher


class RPN(nn.Module):
    """Proposals from anchors; in training also the objectness and box losses.

    Proposals are boxes (xyxy, resized-input pixels) clipped to each image, after pre-NMS top-k,
    NMS and post-NMS top-k per image; (train, test) values are picked by ``self.training``.
    """

    def __init__(self, head: AnchorHead, anchor_generator: AnchorGenerator, box_coder: BoxCoder, matcher: Matcher, *,
                 batch_size_per_image: int = 256, positive_fraction: float = 0.5, smooth_l1_beta: float = 0.0,
                 loss_weight: float = 1.0, nms_thresh: float = 0.7, pre_nms_topk=(12000, 6000),
                 post_nms_topk=(2000, 300), min_size: float = 0.0, boundary_thresh: float = -1.0):
        super().__init__()
        if head.num_classes != 1:
            raise ValueError(f"the RPN head scores one class (objectness); got num_classes={head.num_classes}")
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

    def forward(self, images: ImageList, features: torch.Tensor, gt_boxes: list[torch.Tensor] | None = None
                ) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        """Args: images (their sizes), features (B, C, H, W), gt_boxes per image (G_i, 4) in training.

        Returns (proposals: per image (P_i, 4), losses: dict, empty unless training)."""
        logits, deltas = self.head(features)
        logits, deltas = logits[..., 0], deltas[:, :, 0]  # (B, N), (B, N, 4)
        anchors = self.anchor_generator(tuple(features.shape[-2:]))
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

    def losses(self, anchors, logits, deltas, gt_boxes, sizes) -> dict[str, torch.Tensor]:
        labels, _, targets = label_anchors(
            anchors, gt_boxes, sizes, self.matcher, self.box_coder, num_samples=self.batch_size_per_image,
            positive_fraction=self.positive_fraction, boundary_thresh=self.boundary_thresh)
        valid, pos = labels >= 0, labels == 1
        normalizer = self.batch_size_per_image * logits.shape[0]
        loss_cls = F.binary_cross_entropy_with_logits(logits[valid], labels[valid].float(), reduction="sum")
        loss_loc = box_regression_loss(deltas[pos], targets[pos], self.smooth_l1_beta)
        return {"loss_rpn_cls": loss_cls * self.loss_weight / normalizer,
                "loss_rpn_loc": loss_loc * self.loss_weight / normalizer}
