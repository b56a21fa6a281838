"""Train and test data loaders.

``build_train_loader(cfg, start_iter=0)`` -> an endless iterable of batches (lists of mapper dicts,
``SOLVER.IMS_PER_BATCH // world_size`` per process). Reproducible and resumable: the index stream
is a function of (cfg.SEED, rank, world size) only, and the augmentation of the item at global
stream position g is seeded by (seed, g); so batch k is identical in a fresh run and in a run
started with ``start_iter=k``, whatever NUM_WORKERS is.

``build_test_loader(cfg, name)`` -> (loader, records, DatasetInfo): every image once, in order,
split into contiguous shards across processes; batches of ``TEST.IMS_PER_BATCH``.
"""
from __future__ import annotations

import logging
import pickle
import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from detection.utils.seed import resolve_seed
from detection.utils.threads import worker_threads

from .catalog import get_dataset
from .image_io import ImageReadError
from .info import DatasetInfo
from .mapper import DatasetMapper
from .samplers import (InferenceSampler, InfiniteBatchSampler, RepeatFactorTrainingSampler, TrainingSampler,
                       derive_seed, dist_info, repeat_factors)
from .stats import STATS, DataStats, SkippedImages

__all__ = ["build_train_loader", "build_test_loader", "trivial_collate",
           "SerializedList", "TrainDataset", "TestDataset", "TestLoader"]

logger = logging.getLogger(__name__)

MAX_BAD_IN_A_ROW = 100  # with SKIP_BAD_IMAGES: give up when this many replacements in a row fail


def trivial_collate(batch: list) -> list:
    """The batch as the list of mapper dicts (skipped images, given as None, left out)."""
    return [b for b in batch if b is not None]


class SerializedList:
    """A read-only list stored as one pickled numpy buffer.

    Forked loader workers touching Python objects copy their pages (refcounts), so a list of
    records grows every worker's memory; one flat buffer is shared copy-on-write (Detectron2's trick).
    """

    def __init__(self, items: list):
        blobs = [np.frombuffer(pickle.dumps(x, protocol=pickle.HIGHEST_PROTOCOL), dtype=np.uint8) for x in items]
        self._ends = np.cumsum([len(b) for b in blobs], dtype=np.int64)
        self._data = np.concatenate(blobs) if blobs else np.zeros(0, np.uint8)

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, i: int):
        start = int(self._ends[i - 1]) if i > 0 else 0
        return pickle.loads(memoryview(self._data[start:int(self._ends[i])]))


class TrainDataset(Dataset):
    """Map-style dataset keyed by ``(global_position, index)`` from ``TrainingSampler``.

    The mapper's augmentation seed is derived from (seed, position), so it does not depend on which
    worker runs it. With ``skip_bad``, an unreadable image is replaced by another image drawn from a
    generator seeded by (seed, position, attempt), which keeps the stream deterministic; ``skipped``
    logs each bad file once and counts it (``stats["bad_images"]``), and a file known to be bad is
    not decoded again.
    """

    def __init__(self, records: list[dict], mapper: DatasetMapper, seed: int, skip_bad: bool,
                 info: DatasetInfo | None = None, stats: DataStats = STATS):
        self.records = SerializedList(records)
        self.mapper, self.seed, self.skip_bad, self.info, self.stats = mapper, seed, skip_bad, info, stats
        self.skipped = SkippedImages(len(records), "training", stats)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        position, index = key
        for attempt in range(MAX_BAD_IN_A_ROW):
            record = self.records[index]
            seed = derive_seed(self.seed, position) if attempt == 0 else derive_seed(self.seed, position, attempt)
            if not (self.skip_bad and self.skipped.known(index)):
                try:
                    return self.mapper(record, seed=seed)
                except ImageReadError as e:
                    if not self.skip_bad:
                        raise
                    self.skipped.add(index, e)
            index = int(np.random.default_rng([self.seed, position, attempt]).integers(len(self.records)))
        raise RuntimeError(f"{MAX_BAD_IN_A_ROW} unreadable images in a row; is the image folder right? "
                           f"(last: {record['file_name']})")


class TestDataset(Dataset):
    """Map-style dataset over records in order; with ``skip_bad`` an unreadable image gives None
    (logged and counted by ``skipped``) and is left out of its batch."""

    def __init__(self, records: list[dict], mapper: DatasetMapper, skip_bad: bool, stats: DataStats = STATS):
        self.records = SerializedList(records)
        self.mapper, self.skip_bad, self.stats = mapper, skip_bad, stats
        self.skipped = SkippedImages(len(records), "evaluation", stats)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict | None:
        try:
            return self.mapper(self.records[index])
        except ImageReadError as e:
            if not self.skip_bad:
                raise
            self.skipped.add(index, e)
            return None


class TestLoader:
    """Iterates a DataLoader, leaving out batches that became empty because every image in them was
    skipped, and logs the number of skipped images at the end. ``len()`` is the number of batches
    before skipping."""

    def __init__(self, loader: DataLoader):
        self.loader = loader
        self.dataset, self.sampler, self.batch_size = loader.dataset, loader.sampler, loader.batch_size

    def __iter__(self):
        yield from (batch for batch in self.loader if batch)
        self.dataset.skipped.log_total()

    def __len__(self) -> int:
        return len(self.loader)


def _worker_init(seed: int, rank: int, worker_id: int) -> None:
    # One thread per worker: the training process has the cores (detection.utils.threads).
    worker_threads()
    # Our augmentation is seeded per item; this only pins library code that uses the global RNGs.
    s = derive_seed(seed, rank, worker_id)
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


class _WorkerInit:
    """Picklable worker_init_fn (a lambda would not survive the spawn start method)."""

    def __init__(self, seed: int, rank: int):
        self.seed, self.rank = seed, rank

    def __call__(self, worker_id: int) -> None:
        _worker_init(self.seed, self.rank, worker_id)


def _on_cuda(cfg) -> bool:
    return cfg.MODEL.DEVICE.startswith("cuda") and torch.cuda.is_available()


def _load_train(cfg) -> tuple[list[dict], DatasetInfo, bool]:
    """Concatenated training records of DATASETS.TRAIN, their info, and whether they are localization sets."""
    names = list(cfg.DATASETS.TRAIN)
    if not names:
        raise ValueError("DATASETS.TRAIN is empty")
    records, infos = [], []
    for name in names:
        recs, info = get_dataset(name, cfg, is_train=True)
        records += recs
        infos.append(info)
    for info in infos[1:]:
        if info.class_names != infos[0].class_names:
            raise ValueError(f"DATASETS.TRAIN mixes datasets with different classes: {infos[0].name} and {info.name}")
    kinds = {info.evaluator_type == "loc" for info in infos}
    if len(kinds) > 1:
        raise ValueError(f"DATASETS.TRAIN mixes localization and detection datasets: {names}")
    if not records:
        raise ValueError(f"no training images left in {names} (after FILTER_EMPTY_TRAIN)")
    return records, infos[0], kinds.pop()


def _build_sampler(cfg, records: list[dict], info: DatasetInfo, seed: int, rank: int,
                   world_size: int) -> TrainingSampler:
    name = cfg.DATALOADER.SAMPLER_TRAIN
    if name == "TrainingSampler":
        return TrainingSampler(len(records), seed, rank=rank, world_size=world_size)
    if name != "RepeatFactorTrainingSampler":
        raise ValueError(f"DATALOADER.SAMPLER_TRAIN must be TrainingSampler or RepeatFactorTrainingSampler; "
                         f"got {name!r}")
    # the classes of each image's training targets (ignore boxes are not targets)
    factors = repeat_factors([r["labels"][~r["ignore"]] for r in records], info.num_classes,
                             cfg.DATALOADER.REPEAT_THRESHOLD)
    logger.info("RepeatFactorTrainingSampler (REPEAT_THRESHOLD %g): %d of %d images repeated, %.1f%% more images "
                "per epoch, largest factor %.2f", cfg.DATALOADER.REPEAT_THRESHOLD, int((factors > 1).sum()),
                len(records), 100 * (factors.sum() / len(records) - 1), factors.max())
    return RepeatFactorTrainingSampler(factors, seed, rank=rank, world_size=world_size)


def build_train_loader(cfg, start_iter: int = 0, rank: int | None = None,
                       world_size: int | None = None) -> DataLoader:
    """Endless loader of training batches (lists of mapper dicts) starting at iteration ``start_iter``.

    ``rank``/``world_size`` default to torch.distributed's (0/1 when not initialised). The
    returned DataLoader's ``.dataset`` is a ``TrainDataset`` with ``.info`` (DatasetInfo).
    """
    r, w = dist_info()
    rank, world_size = (r if rank is None else rank), (w if world_size is None else world_size)
    if cfg.SOLVER.IMS_PER_BATCH % world_size:
        raise ValueError(f"SOLVER.IMS_PER_BATCH ({cfg.SOLVER.IMS_PER_BATCH}) must be divisible by the "
                         f"number of processes ({world_size})")
    batch_size = cfg.SOLVER.IMS_PER_BATCH // world_size
    records, info, loc = _load_train(cfg)
    seed = resolve_seed(cfg.SEED)  # the tools resolved it already (launch.setup); a no-op then

    group_ids = None
    if cfg.DATALOADER.ASPECT_RATIO_GROUPING and not loc:  # loc crops are square: nothing to group
        group_ids = [int(rec["width"] > rec["height"]) for rec in records]
    sampler = _build_sampler(cfg, records, info, seed, rank, world_size)
    batch_sampler = InfiniteBatchSampler(sampler, batch_size, group_ids, start_iter)
    dataset = TrainDataset(records, DatasetMapper(cfg, is_train=True, loc=loc), seed,
                           cfg.DATASETS.SKIP_BAD_IMAGES, info)
    logger.info("train loader: %d images from %s (%s mode), %d per batch per process, seed %d, start_iter %d",
                len(records), list(cfg.DATASETS.TRAIN), "localization" if loc else "detection",
                batch_size, seed, start_iter)
    # A generator of its own: DataLoader draws its base seed when an iterator starts, and taking
    # it from the global RNG would shift the stream the model's samplers use (resume would differ).
    generator = torch.Generator().manual_seed(derive_seed(seed, rank, 0))
    # Pinned batches on CUDA: the model's non_blocking copy to the device overlaps the step before.
    # (The loader is endless, so its workers live as long as training: persistent_workers is moot.)
    return DataLoader(dataset, batch_sampler=batch_sampler, num_workers=cfg.DATALOADER.NUM_WORKERS,
                      collate_fn=trivial_collate, worker_init_fn=_WorkerInit(seed, rank), generator=generator,
                      pin_memory=_on_cuda(cfg))


def build_test_loader(cfg, dataset_name: str, rank: int | None = None,
                      world_size: int | None = None) -> tuple[TestLoader, list[dict], DatasetInfo]:
    """(loader, records, DatasetInfo) for evaluating ``dataset_name``.

    This process gets a contiguous shard of the images in order (all of them when not
    distributed); the loader yields lists of mapper dicts. ``records`` is the whole dataset.
    """
    records, info = get_dataset(dataset_name, cfg, is_train=False)
    mapper = DatasetMapper(cfg, is_train=False, loc=info.evaluator_type == "loc")
    dataset = TestDataset(records, mapper, cfg.DATASETS.SKIP_BAD_IMAGES)
    sampler = InferenceSampler(len(records), rank, world_size)
    loader = DataLoader(dataset, batch_size=cfg.TEST.IMS_PER_BATCH, sampler=sampler,
                        num_workers=cfg.DATALOADER.NUM_WORKERS, collate_fn=trivial_collate,
                        worker_init_fn=worker_threads, pin_memory=_on_cuda(cfg),
                        generator=torch.Generator().manual_seed(0))  # leave the global RNG alone
    return TestLoader(loader), records, info
