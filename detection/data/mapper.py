"""The mapper: record -> model input dict (decode, augment, convert to tensors).

Output of ``DatasetMapper(cfg, is_train)(record)``::

    {"image": torch.uint8 (3, H, W)     # transformed image, channels in INPUT.FORMAT order, 0..255
     "boxes": torch.float32 (N, 4)      # xyxy in the TRANSFORMED image's pixels; ignore boxes removed
     "labels": torch.int64 (N,),
     "height": int, "width": int,       # ORIGINAL image size (map predictions back with these)
     "image_id": int, "file_name": str}

plus, for the localization 1-crop test only, "resized_size": (h, w) before the crop and
"crop_origin": (x0, y0) of the crop in that resized image; for the
localization dense test with several INPUT.LOC_TEST_SIZES, "extra_scales": a list of uint8
(3, h, w) tensors, the whole image resized to LOC_TEST_SIZES[1:] ("image" is at LOC_TEST_SIZES[0]).
Normalisation (PIXEL_MEAN/STD) and padding are the model's job. What the mapper did (original
size, crop origin) is recorded in the sample: ``detection.modeling.box_ops.to_original`` undoes it.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from .image_io import ImageReadError, read_image
from .stats import STATS, DataStats
from .transforms import (build_extra_scales_transform, build_test_augmentation, build_train_augmentation,
                         center_crop_origin, reseed, resize_shortest_edge_size)

__all__ = ["DatasetMapper"]

logger = logging.getLogger(__name__)


class DatasetMapper:
    """Callable ``(record, seed=None) -> dict``; ``seed`` fixes the augmentation of this call
    (training loaders pass one per (seed, stream position), so workers and resumes don't matter)."""

    def __init__(self, cfg, is_train: bool, loc: bool = False, stats: DataStats = STATS):
        if cfg.INPUT.FORMAT not in ("RGB", "BGR"):
            raise ValueError(f"INPUT.FORMAT must be RGB or BGR, got {cfg.INPUT.FORMAT!r}")
        self.is_train, self.loc, self.format = is_train, loc, cfg.INPUT.FORMAT
        # transforms run on RGB (ColorJitter's saturation/hue assume it); converted to FORMAT at the end
        self.augment = build_train_augmentation(cfg, loc) if is_train else build_test_augmentation(cfg, loc)
        self.one_crop = loc and not is_train and cfg.INPUT.LOC_TEST_MODE == "1-crop"
        self.extra_scales = build_extra_scales_transform(cfg, loc and not is_train)
        self._crop = (cfg.INPUT.LOC_TEST_SIZES[0], cfg.INPUT.MAX_SIZE_TEST, cfg.INPUT.CROP_SIZE)
        self.stats = stats

    def __call__(self, record: dict, seed: int | None = None) -> dict:
        image = read_image(record["file_name"], "RGB")
        h, w = image.shape[:2]
        if (h, w) != (record["height"], record["width"]):
            raise ImageReadError(
                f"image {record['file_name']} decodes to {h}x{w} (HxW, after EXIF orientation) but its "
                f"annotation says {record['height']}x{record['width']}; the boxes would not match")
        keep = ~record["ignore"]
        sample = self.map_image(image, record["boxes"][keep], record["labels"][keep], seed, record["file_name"])
        sample["image_id"] = int(record["image_id"])
        sample["file_name"] = record["file_name"]
        return sample

    def map_image(self, image: np.ndarray, boxes: np.ndarray | None = None, labels: np.ndarray | None = None,
                  seed: int | None = None, name: str = "<image>") -> dict:
        """An RGB (H, W, 3) uint8 image and its (N, 4) xyxy boxes / (N,) labels in its pixels (none
        for an unlabelled image) -> the model input dict (without ``image_id``/``file_name``)."""
        h, w = image.shape[:2]
        boxes = np.zeros((0, 4), np.float32) if boxes is None else boxes
        labels = np.zeros(0, np.int64) if labels is None else labels
        if seed is not None:
            reseed(self.augment, seed)
        out = self.augment(image=image, bboxes=boxes, box_index=np.arange(len(boxes)))
        kept = np.asarray(out["box_index"], dtype=np.int64).reshape(-1)
        if len(kept) < len(boxes):
            self._count_dropped(len(boxes) - len(kept), name)
        sample = {
            "image": self._to_tensor(out["image"]),
            "boxes": torch.as_tensor(np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)[:, :4]),
            "labels": torch.as_tensor(labels[kept], dtype=torch.int64),
            "height": int(h),
            "width": int(w),
        }
        if self.one_crop:
            short, max_size, crop = self._crop
            rh, rw = resize_shortest_edge_size(h, w, short, max_size)
            sample["resized_size"] = (rh, rw)
            sample["crop_origin"] = center_crop_origin(rh, rw, crop)
        extra = self.extra_scales(image)
        if extra:
            sample["extra_scales"] = [self._to_tensor(im) for im in extra]
        return sample

    def _to_tensor(self, img: np.ndarray) -> torch.Tensor:
        """RGB (H, W, 3) uint8 -> (3, H, W) uint8 in INPUT.FORMAT order."""
        if self.format == "BGR":
            img = img[:, :, ::-1]
        return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))

    def _count_dropped(self, n: int, name: str) -> None:
        total = self.stats.add("boxes_dropped_by_transforms", n)
        logger.debug("%s: %d boxes degenerate after transforms, dropped", name, n)
        if len(str(total)) != len(str(total - n)) or total == n:  # log at 1, 10, 100, ... in total
            logger.info("%d boxes dropped so far because resize/crop/clip made them degenerate "
                        "(counted in detection.data.data_stats())", total)
