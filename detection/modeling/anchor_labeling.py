"""Training labels for anchors, shared by the RPN and the localizer: match to ground truth, mask the
anchors that are not usable, sample a balanced subset, encode regression targets."""
from __future__ import annotations

import torch
from torchvision.ops import box_iou

from .box_coder import BoxCoder
from .box_ops import anchors_inside
from .matcher import Matcher
from .sampler import sample_balanced


def label_anchors(anchors: torch.Tensor, gt_boxes: list[torch.Tensor], image_sizes: torch.Tensor,
                  matcher: Matcher, box_coder: BoxCoder, *, num_samples: int, positive_fraction: float,
                  boundary_thresh: float = -1.0, sample_without_gt: bool = True
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Label the (N, 4) anchors (input pixels) on each image for training.

    Args:
        gt_boxes: per image (G_i, 4) xyxy boxes in input pixels.
        image_sizes: (B, 2) (h, w) of each image, for ``anchors_inside``.
        matcher: IoU thresholds -> labels 1 (positive), 0 (negative), -1 (ignored).
        num_samples, positive_fraction: per image, at most ``num_samples`` labelled anchors, at most
            that fraction positive (``sample_balanced``; negatives fill the rest).
        boundary_thresh: see ``anchors_inside``.
        sample_without_gt: on an image without ground truth sample negatives (the RPN), or
            label nothing (the localizer: no class to train a channel of).

    Returns:
        labels (B, N) int64: 1 sampled positive, 0 sampled negative, -1 not sampled;
        matched (B, N) int64: index of each anchor's best ground-truth box (0 without gt);
        targets (B, N, 4): the box coder's deltas to the matched box (zeros without gt).
    """
    inside = anchors_inside(anchors, image_sizes, boundary_thresh)
    labels, matches, targets = [], [], []
    for gt, usable in zip(gt_boxes, inside):  # gt counts differ per image
        matched, lab = matcher(box_iou(gt, anchors))
        lab = lab.long()
        lab[~usable] = -1
        if len(gt) == 0 and not sample_without_gt:
            lab.fill_(-1)
        pos, neg = sample_balanced(lab, num_samples, positive_fraction, bg_label=0)
        sampled = torch.full_like(lab, -1)
        sampled[pos], sampled[neg] = 1, 0
        labels.append(sampled)
        matches.append(matched)
        targets.append(box_coder.encode(anchors, gt[matched]) if len(gt) else torch.zeros_like(anchors))
    return torch.stack(labels), torch.stack(matches), torch.stack(targets)
