import random

import numpy as np
import torch


def seed_all(seed: int) -> int:
    """Seed python, numpy and torch; a negative seed picks one at random. Returns the seed used."""
    if seed < 0:
        seed = int.from_bytes(np.random.bytes(4), "little") & 0x7FFFFFFF
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return seed
