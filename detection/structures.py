"""Plain containers passed between stages."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def ceil_to_multiple(value: int, divisor: int) -> int:
    """``value`` rounded up to a multiple of ``divisor`` (``divisor`` <= 1: unchanged)."""
    return -(-value // divisor) * divisor if divisor > 1 else value


@dataclass
class ImageList:
    """A batch of images padded to one size.

    tensor: (B, C, H, W), each image at the top-left, zeros to the right and bottom.
    image_sizes: the (h, w) of each image before padding; boxes live in these coordinates.
    """

    tensor: torch.Tensor
    image_sizes: list[tuple[int, int]]

    @staticmethod
    def from_tensors(images: list[torch.Tensor], size_divisibility: int = 0, pad_value: float = 0.0) -> ImageList:
        """Pad (C, h, w) tensors to the largest size, rounded up to ``size_divisibility``."""
        if not images:
            raise ValueError("ImageList.from_tensors needs at least one image")
        sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
        max_h = max(h for h, _ in sizes)
        max_w = max(w for _, w in sizes)
        max_h, max_w = ceil_to_multiple(max_h, size_divisibility), ceil_to_multiple(max_w, size_divisibility)
        if len(images) == 1:  # no copy into a new buffer: a single pad call
            h, w = sizes[0]
            tensor = F.pad(images[0], (0, max_w - w, 0, max_h - h), value=pad_value).unsqueeze(0)
        else:
            tensor = images[0].new_full((len(images), images[0].shape[0], max_h, max_w), pad_value)
            for im, pad in zip(images, tensor):
                pad[:, : im.shape[-2], : im.shape[-1]].copy_(im)
        return ImageList(tensor.contiguous(), sizes)

    def image_sizes_tensor(self) -> torch.Tensor:
        """(B, 2) int64 tensor of (h, w) on the batch's device."""
        return torch.tensor(self.image_sizes, dtype=torch.int64, device=self.tensor.device)
