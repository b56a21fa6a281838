"""What every model here does with its inputs before its own work: normalise, pad, and at test
time run only images of the same padded size together."""
from __future__ import annotations

import torch
import torch.nn as nn

from detection.structures import ImageList


class ImageModel(nn.Module):
    """Base of the detector and the localizer.

    Inputs are a list of dicts, one per image, with ``image``: a (3, h, w) tensor, 0..255, in the
    channel order of INPUT.FORMAT, already resized by the data loader (and, optionally, the
    original ``height``/``width`` to map outputs back to). Subclasses implement
    ``losses(images: ImageList, inputs) -> dict`` and ``inference(images: ImageList, inputs) -> list``.
    """

    def __init__(self, pixel_mean, pixel_std, size_divisibility: int = 16, channels_last: bool = False):
        super().__init__()
        self.size_divisibility = size_divisibility
        self.channels_last = channels_last
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def normalize(self, batched_inputs: list[dict]) -> list[torch.Tensor]:
        """Each image minus the pixel mean, over the pixel std: padding with zeros afterwards pads
        with the mean colour."""
        return [(x["image"].to(self.device, non_blocking=True).float() - self.pixel_mean) / self.pixel_std
                for x in batched_inputs]

    def padded_size(self, image: torch.Tensor) -> tuple[int, int]:
        d = max(1, self.size_divisibility)
        return (-(-image.shape[-2] // d) * d, -(-image.shape[-1] // d) * d)

    def batch(self, images: list[torch.Tensor]) -> ImageList:
        batch = ImageList.from_tensors(images, self.size_divisibility)
        if self.channels_last:
            batch.tensor = batch.tensor.contiguous(memory_format=torch.channels_last)
        return batch

    def same_size_groups(self, images: list[torch.Tensor]) -> list[list[int]]:
        """Indices of ``images`` grouped by padded size, the test-time batches.

        Padding changes the features near an image's border (convolutions see the padded zeros
        through their receptive field), so at test time only images that pad to the same size
        share a forward pass: results never depend on which other images are in the batch."""
        groups: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(images):
            groups.setdefault(self.padded_size(im), []).append(i)
        return list(groups.values())

    def forward(self, batched_inputs: list[dict]):
        images = self.normalize(batched_inputs)
        if self.training:
            return self.losses(self.batch(images), batched_inputs)
        results: list[dict] = [{}] * len(images)
        for idx in self.same_size_groups(images):
            batch = self.batch([images[i] for i in idx])
            for i, r in zip(idx, self.inference(batch, [batched_inputs[i] for i in idx])):
                results[i] = r
        return results

    def losses(self, images: ImageList, batched_inputs: list[dict]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def inference(self, images: ImageList, batched_inputs: list[dict]) -> list[dict]:
        raise NotImplementedError
