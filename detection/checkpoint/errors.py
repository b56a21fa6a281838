"""Errors raised while reading checkpoints and loading them into a model."""
from __future__ import annotations

import pickle


class CheckpointError(RuntimeError):
    """A checkpoint could not be read or loaded; the message names the file."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint path does not exist or is not a file."""


class CorruptCheckpointError(CheckpointError):
    """The file exists but is not a readable PyTorch / pickle checkpoint (truncated, wrong type, ...)."""


class UnsafePickleError(CheckpointError, pickle.UnpicklingError):
    """A pickle asked for a global (function or class) outside the allow-list; nothing was run."""


class WeightLoadError(CheckpointError):
    """The checkpoint does not fit the model (nothing or almost nothing matches, or strict loading failed)."""


class PartialWeightsError(WeightLoadError):
    """The checkpoint leaves part of the model's ResNet as initialised (e.g. R50 weights in an R101 model):
    refused where a model is evaluated or used, unless MODEL.ALLOW_PARTIAL_WEIGHTS is set."""


class NonFiniteWeightsError(CorruptCheckpointError):
    """A tensor of the checkpoint holds NaN or infinite values."""
