"""Logging setup: console on every process (rank-prefixed when distributed), a log file on rank 0."""
from __future__ import annotations

import logging
import os
import sys

from .comm import get_rank, get_world_size


def setup_logger(output_dir: str | None = None, name: str = "detection") -> logging.Logger:
    rank = get_rank()
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for h in list(root.handlers):
        root.removeHandler(h)
    prefix = f"[rank {rank}] " if get_world_size() > 1 else ""
    fmt = logging.Formatter(f"%(asctime)s {prefix}%(name)s %(levelname)s: %(message)s", "%H:%M:%S")
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(fmt)
    console.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    root.addHandler(console)
    if output_dir and rank == 0:
        os.makedirs(output_dir, exist_ok=True)
        fh = logging.FileHandler(os.path.join(output_dir, "log.txt"))
        fh.setFormatter(fmt)
        root.addHandler(fh)
    return logging.getLogger(name)
