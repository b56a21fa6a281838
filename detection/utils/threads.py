"""How many intra-op threads torch uses: as many as the cores this process may run on.

``OMP_NUM_THREADS`` wins when set. Otherwise the CPUs of the process's affinity mask (what a
container or ``taskset`` allows, not the machine's count), shared out among the processes torchrun
starts on this machine (``LOCAL_WORLD_SIZE``). Data-loader workers use one thread each
(``worker_threads``) so they do not compete with the training process for the same cores.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import torch

logger = logging.getLogger(__name__)

_chosen: tuple[int, str] | None = None


def _positive_int(environ: Mapping[str, str], key: str) -> int | None:
    value = environ.get(key, "").strip()
    if not value:
        return None
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"environment variable {key} must be a positive integer; got {value!r}")
    return n


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def intra_op_threads(environ: Mapping[str, str] | None = None, cpus: int | None = None) -> tuple[int, str]:
    """(threads, why): ``OMP_NUM_THREADS`` when set, else ``cpus`` (default: the affinity mask)
    divided by ``LOCAL_WORLD_SIZE`` (set by torchrun), at least 1."""
    environ = os.environ if environ is None else environ
    omp = _positive_int(environ, "OMP_NUM_THREADS")
    if omp is not None:
        return omp, f"OMP_NUM_THREADS={omp}"
    cpus = available_cpus() if cpus is None else cpus
    procs = _positive_int(environ, "LOCAL_WORLD_SIZE") or 1
    if procs == 1:
        return max(1, cpus), f"{cpus} CPU(s) in the affinity mask"
    return max(1, cpus // procs), f"{cpus} CPU(s) in the affinity mask / LOCAL_WORLD_SIZE={procs}"


def configure_threads() -> tuple[int, str]:
    """Set torch's intra-op threads once per process (later calls return the first choice)."""
    global _chosen
    if _chosen is None:
        _chosen = intra_op_threads()
        torch.set_num_threads(_chosen[0])
    return _chosen


def log_threads() -> None:
    n, why = configure_threads()
    logger.info("torch intra-op threads: %d (%s)", n, why)


def worker_threads(worker_id: int = 0) -> None:
    """In a data-loader worker (a ``worker_init_fn``): one torch thread, OpenCV without its own
    thread pool."""
    import cv2  # here, so that importing this module does not load OpenCV

    torch.set_num_threads(1)
    cv2.setNumThreads(0)
