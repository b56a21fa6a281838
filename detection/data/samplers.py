"""Samplers: an infinite seeded training stream, batching with aspect-ratio grouping, and the
ordered inference sharding.

The training stream is a pure function of (seed, dataset size, rank, world size): epoch e of the
*global* stream is ``permutation(size)`` from a generator seeded with (seed, e); global position
``g = e * size + i``; process ``rank`` takes the positions with ``g % world_size == rank`` (disjoint
shards). Items are ``(g, index)``: the position travels with the index so the augmentation of an
item can be seeded by (seed, g), independent of workers, prefetching and restarts.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler

__all__ = ["dist_info", "derive_seed", "TrainingSampler", "InfiniteBatchSampler", "InferenceSampler"]


def dist_info() -> tuple[int, int]:
    """(rank, world_size) from torch.distributed when initialised, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def derive_seed(*keys: int) -> int:
    """A 32-bit seed that depends on all ``keys`` (well mixed: nearby keys give unrelated seeds)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


class TrainingSampler(Sampler):
    """Infinite stream of ``(global_position, index)`` for one process (see the module docstring)."""

    def __init__(self, size: int, seed: int, shuffle: bool = True, rank: int | None = None,
                 world_size: int | None = None):
        if size <= 0:
            raise ValueError("TrainingSampler needs a non-empty dataset")
        r, w = dist_info()
        self.size, self.seed, self.shuffle = size, int(seed), shuffle
        self.rank = r if rank is None else rank
        self.world_size = w if world_size is None else world_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for epoch in itertools.count():
            order = (np.random.default_rng([self.seed, epoch]).permutation(self.size) if self.shuffle
                     else np.arange(self.size))
            base = epoch * self.size
            first = (self.rank - base) % self.world_size  # first i in this epoch with (base + i) % world == rank
            for i in range(first, self.size, self.world_size):
                yield base + i, int(order[i])


class InfiniteBatchSampler(Sampler):
    """Batches of ``batch_size`` items from an infinite ``sampler``, optionally grouped so a batch
    only holds images of one group (aspect ratio: landscape vs portrait, as Detectron2's
    AspectRatioGroupedDataset), starting at batch ``start_iter``.

    Batch k is the same whatever ``start_iter`` is: resuming replays the (cheap, index-only)
    stream from the beginning and discards the first ``start_iter`` batches.
    """

    def __init__(self, sampler: TrainingSampler, batch_size: int, group_ids: Sequence[int] | None = None,
                 start_iter: int = 0):
        if batch_size <= 0:
            raise ValueError(f"batch size must be positive, got {batch_size}")
        self.sampler, self.batch_size, self.start_iter = sampler, batch_size, int(start_iter)
        self.group_ids = None if group_ids is None else np.asarray(group_ids)

    def _batches(self) -> Iterator[list[tuple[int, int]]]:
        if self.group_ids is None:
            it = iter(self.sampler)
            while True:
                yield list(itertools.islice(it, self.batch_size))
        buckets: dict[int, list] = {}
        for item in self.sampler:
            bucket = buckets.setdefault(int(self.group_ids[item[1]]), [])
            bucket.append(item)
            if len(bucket) == self.batch_size:
                yield bucket[:]
                bucket.clear()

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        batches = self._batches()
        for _ in range(self.start_iter):
            next(batches)
        yield from batches


class InferenceSampler(Sampler):
    """Indices 0..size-1 in order, split into contiguous shards, one per process, that together
    cover every index exactly once (shard sizes differ by at most one)."""

    def __init__(self, size: int, rank: int | None = None, world_size: int | None = None):
        r, w = dist_info()
        self.rank = r if rank is None else rank
        self.world_size = w if world_size is None else world_size
        base, extra = divmod(size, self.world_size)
        sizes = [base + int(k < extra) for k in range(self.world_size)]
        begin = sum(sizes[: self.rank])
        self.indices = range(begin, begin + sizes[self.rank])

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
