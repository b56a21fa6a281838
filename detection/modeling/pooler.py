"""RoI pooling on the stride-16 trunk features, before conv5_1 (torchvision.ops)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import torch
import torch.nn as nn
from torchvision.ops import roi_align, roi_pool

from .box_ops import boxes_to_rois

POOLER_TYPES = ("ROIPool", "ROIAlign", "ROIAlignV2")
# Splitting pays only for a large pooling (R101 at the paper's settings: 300 x 1024 x 14 x 14 = 60M
# outputs, 0.6 s on one core); for a small one the threads' start-up costs more than they save.
MIN_OUTPUTS_PER_THREAD = 2 ** 22


@lru_cache(maxsize=None)
def _threads(n: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=n, thread_name_prefix="roi_pool")


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
        return self.pool_rois(features, boxes_to_rois([b.to(features.dtype) for b in boxes]))

    def pool_rois(self, features: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) features + (R, 5) rows of (image index, x1, y1, x2, y2) -> (R, C, S, S).

        torchvision's CPU kernels run on one core: at inference on a CPU a large pooling is split into
        one chunk of RoIs per intra-op thread, pooled in parallel (the op releases the GIL) and concatenated, the
        same values as one call. With gradients one call, so that the backward sums in one order;
        under a tracer or a compiler one call, which they can record."""
        n = torch.get_num_threads()
        per_roi = features.shape[1] * self.output_size[0] * self.output_size[1]
        chunks = min(n, rois.shape[0] * per_roi // MIN_OUTPUTS_PER_THREAD)
        parallel = (features.device.type == "cpu" and chunks > 1
                    and not (torch.is_grad_enabled() and features.requires_grad)
                    # a tracer (TorchScript, ONNX) or a compiler records only this thread's ops
                    and not torch.jit.is_tracing() and not torch.jit.is_scripting()
                    and not torch.compiler.is_compiling())
        if not parallel:
            return self._pool(features, rois)
        pooled = _threads(n).map(lambda r: self._pool(features, r), rois.tensor_split(chunks))
        return torch.cat(list(pooled))

    def _pool(self, features: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        if self.pooler_type == "ROIPool":
            return roi_pool(features, rois, self.output_size, self.spatial_scale)
        return roi_align(features, rois, self.output_size, self.spatial_scale, self.sampling_ratio,
                         aligned=self.pooler_type == "ROIAlignV2")
