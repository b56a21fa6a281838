"""The per-region head of the C4 design: conv5_x on pooled RoIs, then sibling cls / box layers.

Shape shorthand: R RoIs over all images of the batch, K classes, C5 res5 output channels.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import batched_nms, box_iou

from .box_coder import BoxCoder
from .box_ops import clip_boxes, first_k_per_group
from .losses import box_regression_loss
from .matcher import Matcher
from .pooler import ROIPooler
from .sampler import sample_balanced


class BoxPredictor(nn.Module):
    """Sibling linear layers: K+1 class logits (background last) and 4K class-specific deltas
    (or 4 class-agnostic ones)."""

    def __init__(self, in_channels: int, num_classes: int, cls_agnostic: bool = False):
        super().__init__()
        self.cls_score = nn.Linear(in_channels, num_classes + 1)
        self.bbox_pred = nn.Linear(in_channels, 4 if cls_agnostic else 4 * num_classes)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cls_score(x), self.bbox_pred(x)


class Res5ROIHeads(nn.Module):
    """Pool RoIs on res4, run res5 on them, average-pool to a vector, classify and regress.

    Training: sample RoIs (ground truth appended), return the classification and box losses.
    Inference: per image boxes, scores, labels after score threshold, per-class NMS and top-k;
    boxes in resized-input pixels, clipped to the image.
    """

    def __init__(self, pooler: ROIPooler, res5: nn.Module, predictor: BoxPredictor, box_coder: BoxCoder,
                 matcher: Matcher, *, num_classes: int, batch_size_per_image: int = 512,
                 positive_fraction: float = 0.25, proposal_append_gt: bool = True, smooth_l1_beta: float = 0.0,
                 score_thresh: float = 0.05, nms_thresh: float = 0.5, detections_per_image: int = 100):
        super().__init__()
        self.pooler = pooler
        self.res5 = res5
        self.box_predictor = predictor
        self.box_coder = box_coder
        self.matcher = matcher
        self.num_classes = num_classes
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.proposal_append_gt = proposal_append_gt
        self.smooth_l1_beta = smooth_l1_beta
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_image = detections_per_image

    def region_features(self, features: torch.Tensor, boxes: list[torch.Tensor]) -> torch.Tensor:
        """(R, C5) vectors: res5 on the pooled RoIs, mean over space."""
        pooled = self.pooler(features, boxes)
        if features.is_contiguous(memory_format=torch.channels_last):  # keep res5 in the trunk's format
            pooled = pooled.contiguous(memory_format=torch.channels_last)
        return self.res5(pooled).mean(dim=(2, 3))

    def forward(self, features: torch.Tensor, proposals: list[torch.Tensor], image_sizes: list[tuple[int, int]],
                gt_boxes: list[torch.Tensor] | None = None, gt_labels: list[torch.Tensor] | None = None
                ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        """Args: features (B, C4, H, W); proposals per image (P_i, 4) in input pixels; image_sizes (h, w);
        in training gt_boxes (G_i, 4) and gt_labels (G_i,) per image.

        Returns (results, losses): in training ``([], losses)``; at test ``(detections, {})`` with
        per image ``{"boxes": (D, 4) in input pixels, "scores": (D,), "labels": (D,)}``."""
        if self.training:
            if gt_boxes is None or gt_labels is None:
                raise ValueError("Res5ROIHeads in training mode needs ground-truth boxes and labels")
            boxes, labels, targets = self.sample(proposals, gt_boxes, gt_labels)
            # The foreground before res5 is queued: its nonzero (a host sync on a GPU) does not wait for it.
            fg = torch.nonzero(labels < self.num_classes).squeeze(1)
            logits, deltas = self.box_predictor(self.region_features(features, boxes))
            return [], self.losses(logits, deltas, labels, targets, boxes, fg)
        logits, deltas = self.box_predictor(self.region_features(features, proposals))
        return self.inference(logits, deltas, proposals, image_sizes), {}

    @torch.no_grad()
    def sample(self, proposals, gt_boxes, gt_labels):
        """Per image: ``batch_size_per_image`` RoIs, labels (0..K-1, K = background) and matched gt boxes."""
        boxes, labels, targets = [], [], []
        for props, gt, gt_cls in zip(proposals, gt_boxes, gt_labels):  # gt counts differ per image
            if self.proposal_append_gt:
                props = torch.cat((props, gt.to(props.dtype)))
            matched, match_label = self.matcher(box_iou(gt, props))
            cls = gt_cls[matched] if len(gt) else torch.full_like(matched, self.num_classes)
            cls = torch.where(match_label == 0, self.num_classes, cls)
            cls = torch.where(match_label == -1, -1, cls)
            pos, neg = sample_balanced(cls, self.batch_size_per_image, self.positive_fraction, self.num_classes)
            keep = torch.cat((pos, neg))
            boxes.append(props[keep])
            labels.append(cls[keep])
            targets.append(gt[matched[keep]] if len(gt) else props[keep])
        return boxes, torch.cat(labels), torch.cat(targets)

    def losses(self, logits, deltas, labels, target_boxes, boxes, fg=None):
        """fg: indices of the foreground RoIs (labels < K), found here when not given."""
        loss_cls = F.cross_entropy(logits, labels, reduction="mean")
        if fg is None:
            fg = torch.nonzero(labels < self.num_classes).squeeze(1)
        deltas = deltas.view(len(deltas), deltas.shape[1] // 4, 4)
        cls_index = labels[fg] if deltas.shape[1] > 1 else torch.zeros_like(fg)
        pred = deltas[fg, cls_index]
        target = self.box_coder.encode(torch.cat(boxes)[fg], target_boxes[fg])
        # Normalised by all sampled RoIs, not only the foreground (Detectron2 / Fast R-CNN).
        loss_box = box_regression_loss(pred, target, self.smooth_l1_beta) / max(1, labels.numel())
        return {"loss_cls": loss_cls, "loss_box_reg": loss_box}

    @torch.no_grad()
    def inference(self, logits, deltas, proposals, image_sizes) -> list[dict[str, torch.Tensor]]:
        num_images, k = len(proposals), self.num_classes
        counts = torch.tensor([len(p) for p in proposals], device=logits.device)
        image_idx = torch.repeat_interleave(torch.arange(num_images, device=logits.device), counts)
        sizes = torch.tensor(image_sizes, device=logits.device)[image_idx]  # (R, 2) h, w
        scores = F.softmax(logits, dim=-1)[:, :k]
        boxes = self.box_coder.decode(deltas, torch.cat(proposals)).view(len(deltas), deltas.shape[1] // 4, 4)
        boxes = clip_boxes(boxes, sizes[:, None, :]).expand(-1, k, -1)  # agnostic: one box for all classes
        roi, cls = torch.nonzero(scores > self.score_thresh, as_tuple=True)
        det_boxes, det_scores, det_img = boxes[roi, cls], scores[roi, cls], image_idx[roi]
        keep = batched_nms(det_boxes, det_scores, det_img * k + cls, self.nms_thresh)  # per image and class
        keep = keep[first_k_per_group(det_img[keep], self.detections_per_image, num_images)]
        per_image = torch.bincount(det_img[keep], minlength=num_images).tolist()
        return [
            {"boxes": b, "scores": s, "labels": c}
            for b, s, c in zip(det_boxes[keep].split(per_image), det_scores[keep].split(per_image),
                               cls[keep].split(per_image))
        ]
