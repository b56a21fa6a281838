"""What every model here does with its inputs around its own work: normalise, batch, read the
training targets, and at test time run only images of the same padded size together and map the
outputs back to the original images."""
from __future__ import annotations

import torch
import torch.nn as nn

from detection.structures import ImageList, ceil_to_multiple


class ImageModel(nn.Module):
    """Base of the detector and the localizer.

    Inputs are a list of dicts, one per image, with ``image``: a (3, h, w) tensor, 0..255, in the
    channel order of INPUT.FORMAT, already resized by the data mapper, and what the mapper did to it
    (the original ``height``/``width``; see ``box_ops.to_original``). In training each dict also has
    ``boxes`` (G, 4) xyxy in input pixels and ``labels`` (G,) in 0..K-1.

    Subclasses set ``task`` ("detection" or "localization": which data mapping, evaluator and
    drawing fit their outputs) and implement ``losses(images, inputs) -> dict`` and
    ``inference(images, inputs) -> list[dict]`` (outputs in original-image pixels).
    """

    task: str = ""

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

    def targets(self, batched_inputs: list[dict]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per image ground-truth boxes (G_i, 4) float and labels (G_i,) int64, on the model's device."""
        gt_boxes = [x["boxes"].to(self.device, non_blocking=True).float().reshape(-1, 4) for x in batched_inputs]
        gt_labels = [x["labels"].to(self.device, non_blocking=True).long().reshape(-1) for x in batched_inputs]
        return gt_boxes, gt_labels

    def padded_size(self, image: torch.Tensor) -> tuple[int, int]:
        d = self.size_divisibility
        return ceil_to_multiple(image.shape[-2], d), ceil_to_multiple(image.shape[-1], d)

    def batch(self, images: list[torch.Tensor]) -> ImageList:
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return ImageList.from_tensors(images, self.size_divisibility, memory_format=fmt)

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
        """Training: a dict of losses. Evaluation: one dict of outputs per input, in its order."""
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
