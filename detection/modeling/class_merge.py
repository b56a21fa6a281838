"""Merging candidate boxes of one class into one box (box voting): the localizer's merge of its top
anchors, and the merge of test-time views (``meta_arch/multi_view.py``)."""
from __future__ import annotations

import torch


def iou_with(top: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """IoU of each ``top`` box (..., 4) with the boxes (..., T, 4) of its row (broadcast) -> (..., T)."""
    top = top[..., None, :]
    lt = torch.maximum(top[..., :2], boxes[..., :2])
    rb = torch.minimum(top[..., 2:], boxes[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    top_area = (top[..., 2:] - top[..., :2]).clamp(min=0).prod(-1)
    area = (boxes[..., 2:] - boxes[..., :2]).clamp(min=0).prod(-1)
    return inter / (top_area + area - inter).clamp(min=1e-12)


def vote(boxes: torch.Tensor, scores: torch.Tensor, member: torch.Tensor) -> torch.Tensor:
    """boxes (..., T, 4), scores (..., T), member (..., T) bool -> (..., 4): the mean of the member
    boxes weighted by their scores (negative scores count as 0; all weights equal when the members'
    scores are all zero)."""
    w = scores.clamp(min=0) * member
    w = torch.where(w.sum(-1, keepdim=True) > 0, w, member.to(w.dtype))
    return (boxes * w[..., None]).sum(-2) / w.sum(-1, keepdim=True)


def merge_top_boxes(boxes: torch.Tensor, scores: torch.Tensor, merge_iou: float) -> torch.Tensor:
    """Box voting around the top box.

    boxes (..., T, 4), scores (..., T) sorted best first -> (..., 4): the mean of box 0 and of the
    boxes with IoU >= ``merge_iou`` with it (those NMS at that threshold would suppress in favour of
    box 0), weighted by their scores (all weights equal when the scores are all zero). T = 1
    returns box 0.
    """
    member = iou_with(boxes[..., 0, :], boxes) >= merge_iou
    member[..., 0] = True
    return vote(boxes, scores, member)
