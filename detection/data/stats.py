"""Process-shared data-loading counters.

Counters live in ``multiprocessing.Value`` shared memory created in the main process; loader
workers receive them with the dataset (fork inheritance, or pickling at worker start under spawn),
so counts made in workers are visible to the trainer. Read them with ``data_stats()``.
"""
from __future__ import annotations

import multiprocessing as mp

__all__ = ["DataStats", "STATS", "bad_image_count", "data_stats"]


class DataStats:
    """Named integer counters: ``bad_images`` (unreadable images skipped) and
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
