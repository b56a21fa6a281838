"""Samplers: an infinite seeded training stream, batching with aspect-ratio grouping, and the
ordered inference sharding.

The training stream is a pure function of (seed, dataset size, rank, world size): epoch e of the
*global* stream is ``permutation(size)`` from a generator seeded with (seed, e); global position
``g`` = the lengths of the epochs before + i; process ``rank`` takes the positions with
``g % world_size == rank`` (disjoint shards). ``RepeatFactorTrainingSampler`` only changes what one
epoch holds (each image repeated by its factor, rounded stochastically from the same generator). Items are ``(g, index)``: the position travels with the index so the augmentation of an
item can be seeded by (seed, g), independent of workers, prefetching and restarts.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler

__all__ = ["dist_info", "derive_seed", "TrainingSampler", "RepeatFactorTrainingSampler", "repeat_factors",
           "InfiniteBatchSampler", "InferenceSampler"]


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

    def epoch(self, epoch: int) -> np.ndarray:
        """The dataset indices of global epoch ``epoch``, in stream order."""
        if not self.shuffle:
            return np.arange(self.size)
        return np.random.default_rng([self.seed, epoch]).permutation(self.size)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        base = 0
        for epoch in itertools.count():
            order = self.epoch(epoch)
            first = (self.rank - base) % self.world_size  # first i in this epoch with (base + i) % world == rank
            for i in range(first, len(order), self.world_size):
                yield base + i, int(order[i])
            base += len(order)


def repeat_factors(labels: Sequence[np.ndarray], num_classes: int, threshold: float) -> np.ndarray:
    """Per-image repeat factors by the LVIS rule (Gupta et al. 2019; Detectron2's RepeatFactorTrainingSampler).

    ``labels[i]``: the classes of image i's boxes. With f_c the fraction of images containing class
    c, the class factor is r_c = max(1, sqrt(threshold / f_c)) and an image's factor is the largest
    r_c of its classes (1 for an image without boxes). Returns float64 (num_images,).
    """
    counts = np.array([len(x) for x in labels], dtype=np.int64)
    image = np.repeat(np.arange(len(labels)), counts)
    present = np.zeros((len(labels), num_classes), dtype=bool)
    if counts.sum():
        present[image, np.concatenate([np.asarray(x, dtype=np.int64) for x in labels])] = True
    freq = present.mean(axis=0) if len(labels) else np.zeros(num_classes)
    with np.errstate(divide="ignore"):
        per_class = np.maximum(1.0, np.sqrt(threshold / freq))  # absent classes: inf, never selected
    return np.where(present, per_class, 1.0).max(axis=1, initial=1.0)


class RepeatFactorTrainingSampler(TrainingSampler):
    """``TrainingSampler`` whose epoch repeats image i ``floor(r_i)`` times plus once more with
    probability ``frac(r_i)`` (drawn from a generator seeded by (seed, epoch), so the stream stays a
    function of the seed and resumes and shards like the plain sampler); the epoch is then shuffled."""

    def __init__(self, factors: Sequence[float], seed: int, rank: int | None = None, world_size: int | None = None):
        self.factors = np.asarray(factors, dtype=np.float64)
        if (self.factors < 1).any() or not np.isfinite(self.factors).all():
            raise ValueError("repeat factors must be finite and >= 1")
        super().__init__(len(self.factors), seed, shuffle=True, rank=rank, world_size=world_size)

    def epoch(self, epoch: int) -> np.ndarray:
        whole = np.floor(self.factors)
        draw = np.random.default_rng([self.seed, epoch, 1]).random(self.size)
        reps = whole.astype(np.int64) + (draw < self.factors - whole)
        # shuffled by the plain sampler's generator: all factors 1 give the plain stream
        return np.random.default_rng([self.seed, epoch]).permutation(np.repeat(np.arange(self.size), reps))


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
