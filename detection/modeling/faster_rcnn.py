"""Faster R-CNN, C4 design: trunk (conv1..conv4_x) -> RPN -> RoI pooling -> res5 head."""
from __future__ import annotations

import torch
import torch.nn as nn

from detection.structures import ImageList

from .res5_head import Res5ROIHeads
from .rpn import RPN, clip_boxes


class FasterRCNN(nn.Module):
    """Inputs are a list of dicts, one per image (the data loader's output):

    - ``image``: (3, h, w) tensor, 0..255, channel order of INPUT.FORMAT, already resized;
    - ``height``, ``width`` (optional): the original image size; outputs are mapped back to it;
    - training only: ``boxes`` (N, 4) xyxy in resized-image pixels and ``labels`` (N,) in 0..K-1.

    Training returns a dict of the four losses. Evaluation returns per image a dict
    ``{"boxes": (D, 4) xyxy in original-image pixels, "scores": (D,), "labels": (D,)}``.
    """

    def __init__(self, backbone: nn.Module, rpn: RPN, roi_heads: Res5ROIHeads, pixel_mean, pixel_std,
                 size_divisibility: int = 16, feature_name: str = "res4"):
        super().__init__()
        self.backbone = backbone
        self.rpn = rpn
        self.roi_heads = roi_heads
        self.size_divisibility = size_divisibility
        self.feature_name = feature_name
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def normalize(self, batched_inputs: list[dict]) -> list[torch.Tensor]:
        return [(x["image"].to(self.device, non_blocking=True).float() - self.pixel_mean) / self.pixel_std
                for x in batched_inputs]

    def padded_size(self, image: torch.Tensor) -> tuple[int, int]:
        d = max(1, self.size_divisibility)
        return (-(-image.shape[-2] // d) * d, -(-image.shape[-1] // d) * d)

    def forward(self, batched_inputs: list[dict]):
        images = self.normalize(batched_inputs)
        if self.training:
            return self.losses(ImageList.from_tensors(images, self.size_divisibility), batched_inputs)
        # Padding changes the features near an image's border (convolutions see the padded zeros
        # through their receptive field), so at test time only images that pad to the same size
        # share a forward pass: results never depend on which other images are in the batch.
        groups: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(images):
            groups.setdefault(self.padded_size(im), []).append(i)
        results: list[dict] = [{}] * len(images)
        for idx in groups.values():
            batch = ImageList.from_tensors([images[i] for i in idx], self.size_divisibility)
            for i, r, size in zip(idx, self.detect(batch), batch.image_sizes):
                results[i] = postprocess(r, batched_inputs[i], size)
        return results

    def losses(self, images: ImageList, batched_inputs: list[dict]) -> dict[str, torch.Tensor]:
        features = self.backbone(images.tensor)[self.feature_name]
        gt_boxes = [x["boxes"].to(self.device).float().reshape(-1, 4) for x in batched_inputs]
        gt_labels = [x["labels"].to(self.device).long().reshape(-1) for x in batched_inputs]
        proposals, losses = self.rpn(images, features, gt_boxes)
        losses.update(self.roi_heads(features, proposals, images.image_sizes, gt_boxes, gt_labels))
        return losses

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
