"""Tensors to numpy for the evaluation and report code."""
from __future__ import annotations

import numpy as np
import torch


def to_numpy(x, dtype=None) -> np.ndarray:
    """A tensor (any device, any dtype, with or without grad), array or list as a numpy array.

    Half-precision tensors (float16, bfloat16: numpy has no bfloat16) are upcast to float32 first,
    which is exact; ``dtype`` then converts (e.g. ``np.float64`` for metrics).
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        x = x.numpy()
    return np.asarray(x, dtype=dtype)
