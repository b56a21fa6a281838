"""Process-shared data-loading counters.

Counters live in ``multiprocessing.Value`` shared memory created in the main process; loader
workers receive them with the dataset (fork inheritance, or pickling at worker start under spawn),
so counts made in workers are visible to the trainer. Read them with ``data_stats()``.
"""
from __future__ import annotations

import logging
import multiprocessing as mp

import numpy as np

__all__ = ["DataStats", "STATS", "SkippedImages", "bad_image_count", "data_stats"]

logger = logging.getLogger(__name__)


class DataStats:
    """Named integer counters: ``bad_images`` (unreadable image files skipped, each counted once
    per loader) and
    ``boxes_dropped_by_transforms`` (boxes degenerate after resize/crop/clip)."""

    FIELDS = ("bad_images", "boxes_dropped_by_transforms")

    def __init__(self) -> None:
        self._values = {f: mp.Value("q", 0) for f in self.FIELDS}

    def add(self, field: str, n: int = 1) -> int:
        """Add ``n`` and return the new total."""
        v = self._values[field]
        with v.get_lock():
            v.value += n
            return v.value

    def get(self, field: str) -> int:
        return self._values[field].value

    def as_dict(self) -> dict[str, int]:
        return {f: self.get(f) for f in self.FIELDS}

    def reset(self) -> None:
        for v in self._values.values():
            with v.get_lock():
                v.value = 0


STATS = DataStats()


def bad_image_count() -> int:
    """Images skipped so far because they could not be read (DATASETS.SKIP_BAD_IMAGES)."""
    return STATS.get("bad_images")


def data_stats() -> dict[str, int]:
    """All data-loading counters of this process and its loader workers."""
    return STATS.as_dict()


class SkippedImages:
    """The unreadable images of one loader's dataset, skipped under DATASETS.SKIP_BAD_IMAGES.

    One shared-memory flag per record, so whichever worker process meets a bad file, and however
    often the sampler draws it, the file is logged once (with its name and the reason) and counted
    once in ``stats["bad_images"]``; ``log_total()`` writes the final count.
    """

    def __init__(self, size: int, what: str, stats: DataStats = STATS):
        self._flags = mp.Array("b", max(size, 1))
        self.what, self.stats = what, stats

    def known(self, index: int) -> bool:
        """Whether record ``index`` was already found unreadable (no need to decode it again)."""
        return bool(self._flags[index])

    def add(self, index: int, error: Exception) -> None:
        with self._flags.get_lock():
            first = not self._flags[index]
            self._flags[index] = 1
        if first:
            self.stats.add("bad_images")
            logger.warning("%s: skipped unreadable image (%d so far; DATASETS.SKIP_BAD_IMAGES, each file is "
                           "reported once): %s", self.what, self.count, error)

    @property
    def count(self) -> int:
        """Distinct files skipped so far."""
        return int(np.frombuffer(self._flags.get_obj(), dtype=np.int8).sum())

    def log_total(self) -> None:
        """One line with the number of files skipped, if any."""
        if self.count:
            logger.warning("%s: %d unreadable image(s) skipped in all (DATASETS.SKIP_BAD_IMAGES); each is named "
                           "in a warning above", self.what, self.count)
