"""Records (one plain dict per image) and the box checks every dataset loader shares.

A record::

    {"file_name": str,        # absolute path of the image
     "image_id": int,         # the dataset's own id (COCO image id, VOC/ImageNet number)
     "height": int, "width": int,   # original (displayed, EXIF-applied) image size
     "boxes": np.float32 (N, 4),    # xyxy in ORIGINAL image pixels, continuous coordinates:
                                    # a box covering pixel columns 0..9 has x1=0, x2=10
     "labels": np.int64 (N,),       # contiguous class index 0..K-1
     "ignore": np.bool_ (N,)}       # COCO iscrowd / VOC difficult: not a training target,
                                    # kept for evaluation

Boxes are cleaned once, when a dataset is loaded: zero-size and fully-outside boxes are dropped
and counted; boxes partly outside are clipped to the image. (The loaders refuse non-finite values
and negative sizes before this, as errors naming the record: see ``validation``; the cleaner still
drops and counts them for records made elsewhere.)
"""
from __future__ import annotations

import logging
from collections import Counter

import numpy as np

__all__ = ["make_record", "BoxCleaner", "filter_empty_records", "num_targets"]

logger = logging.getLogger(__name__)


def make_record(file_name: str, image_id: int, height: int, width: int,
                boxes, labels, ignore) -> dict:
    """Build a record with the contract's dtypes and shapes (boxes (N,4), labels/ignore (N,))."""
    return {
        "file_name": str(file_name),
        "image_id": int(image_id),
        "height": int(height),
        "width": int(width),
        "boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        "labels": np.asarray(labels, dtype=np.int64).reshape(-1),
        "ignore": np.asarray(ignore, dtype=np.bool_).reshape(-1),
    }


class BoxCleaner:
    """Cleans the raw boxes of one dataset and counts what it changed, by reason.

    ``clean(boxes, height, width)`` returns ``(clipped_boxes, keep_mask)``; ``log(source)`` writes one
    summary line (a warning if any box was dropped) so nothing is dropped silently.
    """

    REASONS = ("non-finite", "zero or negative size", "outside the image")

    def __init__(self) -> None:
        self.dropped: Counter = Counter()
        self.clipped = 0

    def clean(self, boxes: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        finite = np.isfinite(boxes).all(axis=1)
        with np.errstate(invalid="ignore"):
            positive = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            inside = ((boxes[:, 0] < width) & (boxes[:, 2] > 0)
                      & (boxes[:, 1] < height) & (boxes[:, 3] > 0))
        bad_size = finite & ~positive
        outside = finite & positive & ~inside
        keep = finite & positive & inside
        self.dropped["non-finite"] += int((~finite).sum())
        self.dropped["zero or negative size"] += int(bad_size.sum())
        self.dropped["outside the image"] += int(outside.sum())
        clipped = boxes.copy()
        clipped[keep, 0::2] = np.clip(boxes[keep, 0::2], 0, width)
        clipped[keep, 1::2] = np.clip(boxes[keep, 1::2], 0, height)
        self.clipped += int((clipped[keep] != boxes[keep]).any(axis=1).sum())
        return clipped.astype(np.float32), keep

    @property
    def num_dropped(self) -> int:
        return sum(self.dropped.values())

    def log(self, source: str) -> None:
        if self.num_dropped:
            parts = ", ".join(f"{self.dropped[r]} {r}" for r in self.REASONS if self.dropped[r])
            logger.warning("%s: dropped %d invalid boxes (%s); clipped %d boxes partly outside the image",
                           source, self.num_dropped, parts, self.clipped)
        elif self.clipped:
            logger.info("%s: clipped %d boxes partly outside the image", source, self.clipped)


def num_targets(record: dict) -> int:
    """Number of boxes usable as training targets (not ignored)."""
    return int((~record["ignore"]).sum())


def filter_empty_records(records: list[dict], source: str) -> list[dict]:
    """Drop records with no usable (non-ignored) box, logging how many went."""
    kept = [r for r in records if num_targets(r) > 0]
    if len(kept) != len(records):
        logger.info("%s: dropped %d of %d training images that have no usable box (FILTER_EMPTY_TRAIN)",
                    source, len(records) - len(kept), len(records))
    return kept
