"""Merging the candidate boxes of one class into one box (box voting)."""
from __future__ import annotations

import torch


def merge_top_boxes(boxes: torch.Tensor, scores: torch.Tensor, merge_iou: float) -> torch.Tensor:
    """Box voting around the top box.

    boxes (..., T, 4), scores (..., T) sorted best first -> (..., 4): the mean of box 0 and of the
    boxes with IoU >= ``merge_iou`` with it (those NMS at that threshold would suppress in favour of
    box 0), weighted by their scores (all weights equal when the scores are all zero). T = 1
    returns box 0.
    """
    top = boxes[..., :1, :]
    lt = torch.maximum(top[..., :2], boxes[..., :2])
    rb = torch.minimum(top[..., 2:], boxes[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = (boxes[..., 2:] - boxes[..., :2]).clamp(min=0).prod(-1)
    iou = inter / (area[..., :1] + area - inter).clamp(min=1e-12)
    member = iou >= merge_iou
    member[..., 0] = True
    w = scores.clamp(min=0) * member
    w = torch.where(w.sum(-1, keepdim=True) > 0, w, member.to(w.dtype))
    return (boxes * w[..., None]).sum(-2) / w.sum(-1, keepdim=True)
