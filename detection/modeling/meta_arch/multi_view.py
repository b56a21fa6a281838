"""A detector run on several views of each test image, merged: test-time augmentation (sizes,
flips) and tiled inference on large images.

The data mapper makes the views (``detection.data.test_views``): each is a region of the original
image (the whole image or a tile), resized and maybe flipped, with its ``height``/``width`` set to
the region's size, so the detector's own ``to_original`` maps its detections to region pixels.
Here they are un-flipped, shifted by the region's origin, the boxes a tile border cuts are dropped
where another tile sees them whole, and what is left merges per class: NMS, or NMS followed by
box voting (``class_merge.vote``, the localizer's merge).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torchvision.ops import batched_nms

from ..class_merge import iou_with, vote

MERGE_METHODS = ("nms", "vote")


class MultiViewDetector(nn.Module):
    """Wraps a detector for inference on inputs that carry ``views`` (the others pass through).

    Args:
        model: the detector (``FasterRCNN``); its weights stay its own (``state_dict`` keys gain the
            prefix ``model.``: load and save the detector, not this wrapper).
        nms_thresh: IoU of the per-class NMS over all views' detections.
        merge: "nms", or "vote": each kept box becomes the score-weighted mean of the same-class
            boxes with IoU >= ``nms_thresh`` with it (its score stays the kept one's).
        detections_per_image: at most this many detections after merging.
        views_per_batch: at most this many views in one forward pass (same-size views batch).
        border: a tile's detection within ``border`` * tile side of an inner tile border (one that is
            not the image's) counts as cut by it.
    """

    def __init__(self, model: nn.Module, nms_thresh: float = 0.5, merge: str = "nms",
                 detections_per_image: int = 100, views_per_batch: int = 1, border: float = 0.02):
        super().__init__()
        if merge not in MERGE_METHODS:
            raise ValueError(f"TEST.AUG.MERGE must be one of {MERGE_METHODS}; got {merge!r}")
        self.model = model
        self.nms_thresh, self.merge = nms_thresh, merge
        self.detections_per_image = detections_per_image
        self.views_per_batch = max(1, views_per_batch)
        self.border = border

    @property
    def task(self) -> str:
        return self.model.task

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    def forward(self, batched_inputs: list[dict]):
        if self.training or not any("views" in x for x in batched_inputs):
            return self.model(batched_inputs)
        return [self.merge_views(x) if "views" in x else self.model([x])[0] for x in batched_inputs]

    @torch.no_grad()
    def merge_views(self, sample: dict) -> dict:
        """One image's views -> ``{"boxes" (D, 4) original pixels, "scores", "labels"}``."""
        views = sample["views"]
        outputs = []
        for i in range(0, len(views), self.views_per_batch):
            outputs += self.model(views[i:i + self.views_per_batch])
        dev = outputs[0]["boxes"].device
        counts = torch.tensor([len(o["boxes"]) for o in outputs], device=dev)
        view_of = torch.repeat_interleave(torch.arange(len(views), device=dev), counts)
        boxes = torch.cat([o["boxes"] for o in outputs]).reshape(-1, 4)
        scores = torch.cat([o["scores"] for o in outputs])
        labels = torch.cat([o["labels"] for o in outputs])
        regions = torch.tensor([v["region"] for v in views], dtype=boxes.dtype, device=dev)  # (V, 4)
        flips = torch.tensor([v["flip"] for v in views], dtype=torch.bool, device=dev)
        tiles = torch.tensor([v["tile"] for v in views], dtype=torch.bool, device=dev)
        # un-flip in region pixels (x -> w - x), then shift into the whole image
        width = (regions[view_of, 2] - regions[view_of, 0])[:, None]
        unflipped = torch.stack((width[:, 0] - boxes[:, 2], boxes[:, 1], width[:, 0] - boxes[:, 0], boxes[:, 3]), 1)
        boxes = torch.where(flips[view_of][:, None], unflipped, boxes) + regions[view_of, :2].repeat(1, 2)
        if tiles.any():
            size = (sample["height"], sample["width"])
            keep = ~self.cut_and_seen_whole_elsewhere(boxes, view_of, regions, tiles, size)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        return self.merge_detections(boxes, scores, labels)

    def cut_and_seen_whole_elsewhere(self, boxes, view_of, regions, tiles, image_size) -> torch.Tensor:
        """(D,) mask of the tile detections that an inner tile border cuts (within ``border`` of it)
        and that another tile region holds whole (away from its inner borders)."""
        h, w = image_size
        side = (regions[:, 2:] - regions[:, :2]).max(1).values  # (V,)
        margin = (self.border * side).clamp(min=1.0)
        inf = torch.full_like(margin, float("inf"))
        # inner limits of each view: borders on the image's edge cut nothing
        lo_x = torch.where(regions[:, 0] > 0, regions[:, 0] + margin, -inf)
        lo_y = torch.where(regions[:, 1] > 0, regions[:, 1] + margin, -inf)
        hi_x = torch.where(regions[:, 2] < w, regions[:, 2] - margin, inf)
        hi_y = torch.where(regions[:, 3] < h, regions[:, 3] - margin, inf)
        whole = ((boxes[:, None, 0] >= lo_x) & (boxes[:, None, 1] >= lo_y)
                 & (boxes[:, None, 2] <= hi_x) & (boxes[:, None, 3] <= hi_y))  # (D, V)
        own = torch.arange(len(boxes), device=boxes.device)
        cut = tiles[view_of] & ~whole[own, view_of]
        other_tile = tiles[None, :] & (regions[None, :, :] != regions[view_of][:, None, :]).any(-1)
        return cut & (whole & other_tile).any(1)

    def merge_detections(self, boxes, scores, labels) -> dict:
        keep = batched_nms(boxes, scores, labels, self.nms_thresh)[:self.detections_per_image]
        merged = boxes[keep]
        if self.merge == "vote" and len(keep):
            member = (iou_with(merged, boxes) >= self.nms_thresh) & (labels[keep][:, None] == labels[None, :])
            merged = vote(boxes.expand(len(keep), -1, -1), scores.expand(len(keep), -1), member)
        return {"boxes": merged, "scores": scores[keep], "labels": labels[keep]}
