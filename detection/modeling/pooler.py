"""RoI pooling on the stride-16 trunk features, before conv5_1 (torchvision.ops)."""
from __future__ import annotations

import torch
import torch.nn as nn
from torchvision.ops import roi_align, roi_pool

from .box_ops import boxes_to_rois

POOLER_TYPES = ("ROIPool", "ROIAlign", "ROIAlignV2")


class ROIPooler(nn.Module):
    """(B, C, H, W) features + boxes in input pixels -> (R, C, S, S).

    ROIPool is the paper's (quantised bins, max); ROIAlign samples bilinearly; ROIAlignV2 also
    shifts by half a pixel so a box's continuous coordinates line up with the feature grid
    (``aligned=True``), Detectron2's choice.
    """

    def __init__(self, output_size: int, spatial_scale: float, pooler_type: str = "ROIAlignV2",
                 sampling_ratio: int = 0):
        super().__init__()
        if pooler_type not in POOLER_TYPES:
            raise ValueError(f"MODEL.ROI_BOX_HEAD.POOLER_TYPE must be one of {POOLER_TYPES}; got {pooler_type!r}")
        self.output_size = (output_size, output_size)
        self.spatial_scale = spatial_scale
        self.pooler_type = pooler_type
        self.sampling_ratio = sampling_ratio

    def forward(self, features: torch.Tensor, boxes: list[torch.Tensor]) -> torch.Tensor:
        rois = boxes_to_rois([b.to(features.dtype) for b in boxes])
        if self.pooler_type == "ROIPool":
            return roi_pool(features, rois, self.output_size, self.spatial_scale)
        return roi_align(features, rois, self.output_size, self.spatial_scale, self.sampling_ratio,
                         aligned=self.pooler_type == "ROIAlignV2")
