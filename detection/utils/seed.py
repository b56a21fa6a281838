"""The run's seed: resolved once (``resolve_seed``), then used for the model (``seed_all``) and
the data (``build_train_loader`` derives every stream from it)."""
from __future__ import annotations

import logging
import os
import random

import numpy as np
import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)


def resolve_seed(seed: int) -> int:
    """``seed`` when >= 0; when negative a random seed, the same in every process (rank 0's is
    broadcast, so call this on every rank when distributed). ``tools`` store the result in
    ``cfg.SEED`` so that the model, the data and the saved config.yaml all see one seed."""
    seed = int(seed)
    if seed >= 0:
        return seed
    seed = int.from_bytes(os.urandom(4), "little") >> 1
    if dist.is_available() and dist.is_initialized():
        box = [seed]
        dist.broadcast_object_list(box, src=0)
        seed = box[0]
    logger.info("SEED < 0: using the random seed %d", seed)
    return seed


def seed_all(seed: int) -> int:
    """Seed python, numpy and torch with ``resolve_seed(seed)``. Returns the seed used."""
    seed = resolve_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return seed
