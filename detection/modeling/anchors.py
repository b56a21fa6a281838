"""Translation-invariant anchors on one feature map, cached per feature size."""
from __future__ import annotations

import math

import torch
import torch.nn as nn


def cell_anchors(sizes: list[float], aspect_ratios: list[float]) -> torch.Tensor:
    """(len(sizes) * len(aspect_ratios), 4) anchors centred on (0, 0), size-major.

    An anchor of size s and ratio r = h / w has area s^2: w = sqrt(s^2 / r), h = r * w.
    """
    out = []
    for size in sizes:
        area = float(size) ** 2
        for ratio in aspect_ratios:
            w = math.sqrt(area / ratio)
            h = ratio * w
            out.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
    return torch.tensor(out, dtype=torch.float32)


class AnchorGenerator(nn.Module):
    """Anchors for a stride-``stride`` feature map.

    The anchor at feature cell (i, j), index a, is ``cell[a] + (j, i, j, i) * stride + offset * stride``.
    Order: row-major over cells, then anchors of the cell (the RPN head's output order).
    """

    def __init__(self, sizes: list[float], aspect_ratios: list[float], stride: int, offset: float = 0.0):
        super().__init__()
        if not 0.0 <= offset < 1.0:
            raise ValueError(f"anchor offset must be in [0, 1); got {offset}")
        self.stride = stride
        self.offset = offset
        self.register_buffer("cell_anchors", cell_anchors(sizes, aspect_ratios), persistent=False)
        self._cache: dict[tuple, torch.Tensor] = {}

    @property
    def num_anchors(self) -> int:
        return self.cell_anchors.shape[0]

    def forward(self, feature_size: tuple[int, int]) -> torch.Tensor:
        """(H * W * A, 4) anchors in input-image pixels for an (H, W) feature map."""
        h, w = feature_size
        key = (h, w, self.cell_anchors.device)
        if key not in self._cache:
            self._cache[key] = grid_anchors(self.cell_anchors, h, w, self.stride, self.offset)
        return self._cache[key]


def grid_anchors(cell: torch.Tensor, h, w, stride: int, offset: float) -> torch.Tensor:
    """(h * w * A, 4) anchors: the (A, 4) ``cell`` anchors shifted to every cell of an (h, w) map
    (``h``, ``w`` ints, or 0-dim tensors in a traced graph, where the map size is dynamic)."""
    xs = (torch.arange(w, dtype=torch.float32, device=cell.device) + offset) * stride
    ys = (torch.arange(h, dtype=torch.float32, device=cell.device) + offset) * stride
    sy, sx = torch.meshgrid(ys, xs, indexing="ij")
    shifts = torch.stack((sx, sy, sx, sy), dim=-1).reshape(-1, 1, 4)
    return (shifts + cell.view(1, -1, 4)).reshape(-1, 4)
