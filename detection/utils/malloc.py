"""glibc's allocator, told to keep the memory the process frees for its next allocations.

By default glibc gives large freed blocks back to the OS (blocks above an adaptive threshold go to
mmap, and the heap's free top is trimmed), and the next allocation of the same size maps fresh
pages that fault in one by one as they are first written. A training step allocates and frees the
same activations and gradients every iteration, so it pays thousands of page faults an iteration:
3500 for the quickstart (6% of its time on CPU), far fewer with larger thresholds. The peak memory
is the same; it is only not handed back between iterations. ``DETECTION_MALLOC_DEFAULTS=1`` keeps
glibc's defaults; elsewhere than Linux/glibc this does nothing.
"""
from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
KEEP_BYTES = 1 << 30  # blocks up to 1 GiB come from the heap; up to 1 GiB of free heap top is kept

_done: bool | None = None


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; returns whether they are raised."""
    global _done
    if _done is None:
        _done = False
        if sys.platform.startswith("linux") and os.environ.get("DETECTION_MALLOC_DEFAULTS", "") in ("", "0"):
            try:
                mallopt = ctypes.CDLL("libc.so.6").mallopt
            except (OSError, AttributeError):  # not glibc (musl, ...)
                return _done
            _done = bool(mallopt(M_MMAP_THRESHOLD, KEEP_BYTES)) & bool(mallopt(M_TRIM_THRESHOLD, KEEP_BYTES))
    return _done
