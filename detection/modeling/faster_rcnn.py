"""Faster R-CNN, C4 design: trunk (conv1..conv4_x) -> RPN -> RoI pooling -> res5 head."""
from __future__ import annotations

import torch
import torch.nn as nn

from detection.structures import ImageList

from .meta_arch import ImageModel
from .res5_head import Res5ROIHeads
from .rpn import RPN, clip_boxes


class FasterRCNN(ImageModel):
    """Inputs: see :class:`ImageModel`; in training each dict also has ``boxes`` (N, 4) xyxy in
    resized-image pixels and ``labels`` (N,) in 0..K-1.

    Training returns a dict of the four losses. Evaluation returns per image a dict
    ``{"boxes": (D, 4) xyxy in original-image pixels, "scores": (D,), "labels": (D,)}``.
    """

    def __init__(self, backbone: nn.Module, rpn: RPN, roi_heads: Res5ROIHeads, pixel_mean, pixel_std,
                 size_divisibility: int = 16, feature_name: str = "res4", channels_last: bool = False):
        super().__init__(pixel_mean, pixel_std, size_divisibility, channels_last)
        self.backbone = backbone
        self.rpn = rpn
        self.roi_heads = roi_heads
        self.feature_name = feature_name

    def losses(self, images: ImageList, batched_inputs: list[dict]) -> dict[str, torch.Tensor]:
        features = self.backbone(images.tensor)[self.feature_name]
        gt_boxes = [x["boxes"].to(self.device).float().reshape(-1, 4) for x in batched_inputs]
        gt_labels = [x["labels"].to(self.device).long().reshape(-1) for x in batched_inputs]
        proposals, losses = self.rpn(images, features, gt_boxes)
        losses.update(self.roi_heads(features, proposals, images.image_sizes, gt_boxes, gt_labels))
        return losses

    def inference(self, images: ImageList, batched_inputs: list[dict]) -> list[dict]:
        return [postprocess(r, x, size) for r, x, size in zip(self.detect(images), batched_inputs, images.image_sizes)]

    def detect(self, images: ImageList) -> list[dict]:
        """Detections per image in resized-input pixels."""
        features = self.backbone(images.tensor)[self.feature_name]
        proposals, _ = self.rpn(images, features)
        return self.roi_heads(features, proposals, images.image_sizes)


def postprocess(result: dict, inputs: dict, image_size: tuple[int, int]) -> dict:
    """Map boxes from the resized input back to the original image (``height``/``width`` in
    ``inputs``), clip them to it and drop boxes that became empty."""
    h, w = image_size
    out_h, out_w = inputs.get("height", h), inputs.get("width", w)
    boxes = result["boxes"]
    scale = boxes.new_tensor([out_w / w, out_h / h, out_w / w, out_h / h])
    boxes = clip_boxes(boxes * scale, boxes.new_tensor([out_h, out_w]))
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return {"boxes": boxes[keep], "scores": result["scores"][keep], "labels": result["labels"][keep]}
