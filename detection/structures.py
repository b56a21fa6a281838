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
    def from_tensors(images: list[torch.Tensor], size_divisibility: int = 0, pad_value: float = 0.0,
                     memory_format: torch.memory_format = torch.contiguous_format) -> ImageList:
        """Pad (C, h, w) tensors to the largest size, rounded up to ``size_divisibility``, into one
        (B, C, H, W) tensor in ``memory_format`` (written once: no conversion afterwards)."""
        if not images:
            raise ValueError("ImageList.from_tensors needs at least one image")
        sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
        max_h = max(h for h, _ in sizes)
        max_w = max(w for _, w in sizes)
        max_h, max_w = ceil_to_multiple(max_h, size_divisibility), ceil_to_multiple(max_w, size_divisibility)
        if len(images) == 1 and memory_format == torch.contiguous_format:  # a single pad call
            h, w = sizes[0]
            tensor = F.pad(images[0], (0, max_w - w, 0, max_h - h), value=pad_value).unsqueeze(0)
            return ImageList(tensor.contiguous(), sizes)
        first = images[0]
        tensor = torch.empty((len(images), first.shape[0], max_h, max_w), dtype=first.dtype, device=first.device,
                             memory_format=memory_format)
        for im, pad, (h, w) in zip(images, tensor, sizes):
            pad[:, :h, :w].copy_(im)
            pad[:, h:].fill_(pad_value)
            pad[:, :h, w:].fill_(pad_value)
        return ImageList(tensor, sizes)

    def image_sizes_tensor(self) -> torch.Tensor:
        """(B, 2) int64 tensor of (h, w) on the batch's device."""
        return torch.tensor(self.image_sizes, dtype=torch.int64, device=self.tensor.device)
