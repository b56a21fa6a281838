"""Faster R-CNN, C4 design: trunk (conv1..conv4_x) -> RPN -> RoI pooling -> res5 head."""
from __future__ import annotations

import torch
import torch.nn as nn

from detection.structures import ImageList

from ..box_ops import nonempty, to_original
from ..res5_head import Res5ROIHeads
from ..rpn import RPN
from .base import ImageModel


class FasterRCNN(ImageModel):
    """Inputs: see :class:`ImageModel`.

    Training returns a dict of the four losses. Evaluation returns per image a dict
    ``{"boxes": (D, 4) xyxy in original-image pixels, "scores": (D,), "labels": (D,)}``.
    """

    task = "detection"
    # tensor -> tensor submodules that fast paths may compile or replace (detection.fastpath)
    dense_parts = ("backbone", "rpn.head", "roi_heads.res5", "roi_heads.box_predictor")
    int8_parts = ("backbone", "roi_heads.res5")

    def __init__(self, backbone: nn.Module, rpn: RPN, roi_heads: Res5ROIHeads, pixel_mean, pixel_std,
                 size_divisibility: int = 16, feature_name: str = "res4", channels_last: bool = False):
        super().__init__(pixel_mean, pixel_std, size_divisibility, channels_last)
        self.backbone = backbone
        self.rpn = rpn
        self.roi_heads = roi_heads
        self.feature_name = feature_name

    @property
    def num_classes(self) -> int:
        return self.roi_heads.num_classes

    def losses(self, images: ImageList, batched_inputs: list[dict]) -> dict[str, torch.Tensor]:
        features = self.backbone(images.tensor)[self.feature_name]
        gt_boxes, gt_labels = self.targets(batched_inputs)
        proposals, losses = self.rpn(images, features, gt_boxes)
        _, head_losses = self.roi_heads(features, proposals, images.image_sizes, gt_boxes, gt_labels)
        losses.update(head_losses)
        return losses

    def inference(self, images: ImageList, batched_inputs: list[dict]) -> list[dict]:
        return [detector_postprocess(r, x, size)
                for r, x, size in zip(self.detect(images), batched_inputs, images.image_sizes)]

    def detect(self, images: ImageList) -> list[dict]:
        """Detections per image in resized-input pixels."""
        features = self.backbone(images.tensor)[self.feature_name]
        proposals, _ = self.rpn(images, features)
        detections, _ = self.roi_heads(features, proposals, images.image_sizes)
        return detections


def detector_postprocess(result: dict, sample: dict, input_size: tuple[int, int]) -> dict:
    """Detections in input pixels -> original-image pixels (``box_ops.to_original``), dropping the
    boxes that became empty."""
    boxes = to_original(result["boxes"], sample, input_size)
    keep = nonempty(boxes)
    return {"boxes": boxes[keep], "scores": result["scores"][keep], "labels": result["labels"][keep]}
