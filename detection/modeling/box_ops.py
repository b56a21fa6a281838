"""Box geometry shared by every stage: clipping, anchor usability, top-k per group, RoI rows and
the inverse of the data-side resize/crop.

Boxes are (x1, y1, x2, y2) in continuous pixel coordinates (a box's width is x2 - x1) of the image
named in each docstring: the resized model input, or the original image.
"""
from __future__ import annotations

import torch


def clip_boxes(boxes: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """Clip (..., 4) xyxy boxes to per-box image sizes (..., 2) given as (h, w)."""
    w = sizes[..., 1:2].to(boxes.dtype)
    h = sizes[..., 0:1].to(boxes.dtype)
    x = torch.minimum(boxes[..., 0::2].clamp(min=0), w)
    y = torch.minimum(boxes[..., 1::2].clamp(min=0), h)
    return torch.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), dim=-1)


def nonempty(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) -> (...) mask of boxes with positive width and height."""
    return (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])


def anchors_inside(anchors: torch.Tensor, sizes: torch.Tensor, boundary_thresh: float) -> torch.Tensor:
    """(B, N) mask of the (N, 4) anchors usable on each image of (B, 2) sizes (h, w).

    Anchors centred in the batch padding never are. With ``boundary_thresh >= 0`` (py-faster-rcnn
    used 0) anchors crossing the image border by more than that are not either.
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


def first_k_per_group(group: torch.Tensor, k: int, num_groups: int) -> torch.Tensor:
    """Indices into ``group`` (already sorted by priority) of the first ``k`` members of each group,
    ordered by group, then priority."""
    order = torch.sort(group, stable=True).indices
    counts = torch.bincount(group, minlength=num_groups)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(group.numel(), device=group.device) - torch.repeat_interleave(starts, counts)
    return order[rank < k]


def boxes_to_rois(boxes: list[torch.Tensor]) -> torch.Tensor:
    """Per-image (R_i, 4) boxes -> (sum R_i, 5) rows of (image index, x1, y1, x2, y2)."""
    index = torch.cat([torch.full((len(b), 1), i, dtype=b.dtype, device=b.device) for i, b in enumerate(boxes)])
    return torch.cat((index, torch.cat(boxes)), dim=1)


def to_original(boxes: torch.Tensor, sample: dict, input_size: tuple[int, int]) -> torch.Tensor:
    """The one inverse of the data-side geometry: (..., 4) boxes in pixels of the model input of size
    ``input_size`` (h, w) -> pixels of the original image, clipped to it.

    What the mapper did is recorded in ``sample``: the original ``height``/``width`` (absent: the
    input is the original), and for a localization 1-crop input the ``crop_origin`` (x0, y0) of the
    crop in the resized image of size ``resized_size`` (h, w). The input is shifted by the crop
    origin into the resized image, then scaled per axis to the original. Boxes may reach past a
    crop (regressors extrapolate from an object's visible part).
    """
    x0, y0 = sample.get("crop_origin", (0, 0))
    rh, rw = sample["resized_size"] if "crop_origin" in sample else input_size
    oh, ow = sample.get("height", rh), sample.get("width", rw)
    offset = boxes.new_tensor([x0, y0, x0, y0])
    scale = boxes.new_tensor([ow / rw, oh / rh, ow / rw, oh / rh])
    return clip_boxes((boxes + offset) * scale, boxes.new_tensor([oh, ow]))
