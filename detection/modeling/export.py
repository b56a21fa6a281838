"""The detector's inference on one image as one traceable graph (TorchScript, ONNX).

``ExportableDetector(model)`` shares every layer of a ``FasterRCNN`` and runs its test path for one
image with tensor-only control flow, so that ``torch.jit.trace`` and ``torch.onnx.export`` record
a graph that holds for any image size: sizes come from ``shape`` (traced), top-k counts are
``min(k, available)`` as tensors, and the batch bookkeeping of the batched path (per-image splits
of Python lists) is not needed for one image.

Inside the graph: normalisation (for uint8 input), padding to SIZE_DIVISIBILITY, the trunk, the RPN
(anchors for the map's size, decoding, clipping, top-k, NMS), RoI pooling, the res5 head, the box
predictor, per-class score threshold and NMS, the top DETECTIONS_PER_IMAGE, and the mapping back
to original-image pixels. Outside (Python): decoding the file and resizing (the data mapper's
``ResizeShortestEdge``), which give the (3, h, w) input and the original size.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import batched_nms, nms

from .anchors import grid_anchors
from .box_ops import clip_boxes, nonempty
from .meta_arch.faster_rcnn import FasterRCNN


def _at_most(n, k: int):
    """min(n, k) for a count ``n`` that is an int in eager mode and a traced 0-dim tensor in a trace."""
    if isinstance(n, torch.Tensor):
        return torch.clamp(n, max=k)
    return min(n, k)


class ExportableDetector(nn.Module):
    """``forward(image, original_size) -> (boxes (D, 4), scores (D,), labels (D,) int64)``.

    ``image``: (3, h, w), the mapper's resized image in INPUT.FORMAT channel order, uint8 0..255
    (``normalized_input=False``) or already ``(x - PIXEL_MEAN) / PIXEL_STD`` as float32
    (``normalized_input=True``). ``original_size``: int64 (2,) tensor (height, width) of the
    original image. Boxes are xyxy in original-image pixels, as ``FasterRCNN`` returns them.
    """

    def __init__(self, model: FasterRCNN, normalized_input: bool = False):
        super().__init__()
        if not isinstance(model, FasterRCNN):
            raise TypeError(f"export takes a FasterRCNN detector; got {type(model).__name__}")
        self.model = model
        self.normalized_input = normalized_input

    def forward(self, image: torch.Tensor, original_size: torch.Tensor):
        m = self.model
        x = image.float() if self.normalized_input else (image.float() - m.pixel_mean) / m.pixel_std
        size = torch._shape_as_tensor(x)[1:]  # (h, w), traced
        d = m.size_divisibility
        if d > 1:
            h, w = x.shape[-2:]
            x = F.pad(x, (0, (w + d - 1) // d * d - w, 0, (h + d - 1) // d * d - h))
        features = m.backbone(x[None])[m.feature_name]
        proposals = self.proposals(features, size)
        boxes, scores, labels = self.detections(features, proposals, size)
        scale = (original_size.float() / size.float())[[1, 0, 1, 0]]  # (sx, sy, sx, sy)
        boxes = clip_boxes(boxes * scale, original_size)
        keep = nonempty(boxes)
        return boxes[keep], scores[keep], labels[keep]

    def proposals(self, features: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
        """(P, 4) proposals in input pixels: ``RPN.find_proposals`` for one image."""
        rpn = self.model.rpn
        logits, deltas = rpn.head(features)
        logits, deltas = logits[0, :, 0], deltas[0, :, 0]  # (N,), (N, 4)
        fh, fw = features.shape[-2:]
        anchors = grid_anchors(rpn.anchor_generator.cell_anchors, fh, fw, rpn.anchor_generator.stride,
                               rpn.anchor_generator.offset)
        scores, idx = logits.topk(_at_most(logits.shape[0], rpn.pre_nms_topk[1]))
        boxes = clip_boxes(rpn.box_coder.decode(deltas[idx], anchors[idx]), size)
        ws, hs = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        keep = torch.isfinite(boxes).all(-1) & torch.isfinite(scores) & (ws > rpn.min_size) & (hs > rpn.min_size)
        boxes, scores = boxes[keep], scores[keep]
        return boxes[nms(boxes, scores, rpn.nms_thresh)[:rpn.post_nms_topk[1]]]

    def detections(self, features: torch.Tensor, proposals: torch.Tensor, size: torch.Tensor):
        """``Res5ROIHeads.inference`` for one image: boxes in input pixels, scores, labels."""
        heads = self.model.roi_heads
        rois = torch.cat((torch.zeros_like(proposals[:, :1]), proposals), dim=1)  # all of image 0
        pooled = heads.pooler.pool_rois(features, rois)
        logits, deltas = heads.box_predictor(heads.res5(pooled).mean(dim=(2, 3)))
        k = heads.num_classes
        scores = F.softmax(logits, dim=-1)[:, :k]
        boxes = heads.box_coder.decode(deltas, proposals).view(deltas.shape[0], -1, 4)
        boxes = clip_boxes(boxes, size).expand(-1, k, -1)
        roi, cls = torch.nonzero(scores > heads.score_thresh, as_tuple=True)
        boxes, scores = boxes[roi, cls], scores[roi, cls]
        keep = batched_nms(boxes, scores, cls, heads.nms_thresh)[:heads.detections_per_image]
        return boxes[keep], scores[keep], cls[keep]
