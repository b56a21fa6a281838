"""Weight import: torchvision, MSRA/Detectron caffe2, Detectron2 and our own checkpoints.

    from detection.checkpoint import load_weights
    report = load_weights(model, "R-101.pkl")   # logs report.table()

Pickles are read with a restricted unpickler and torch files with ``weights_only=True``.
"""
from .converters import (INPUT_HINTS, Checkpoint, CheckpointInfo, convert_caffe2, convert_checkpoint,
                         convert_detectron2, convert_torchvision, detect_format)
from .errors import (CheckpointError, CheckpointNotFoundError, CorruptCheckpointError, NonFiniteWeightsError,
                     PartialWeightsError, UnsafePickleError, WeightLoadError)
from .loader import (LoadReport, group_names, load_checkpoint, load_weights, match_checkpoint, read_checkpoint,
                     read_raw)
from .safe_pickle import RestrictedUnpickler, safe_load, safe_loads

__all__ = [
    "Checkpoint", "CheckpointError", "CheckpointInfo", "CheckpointNotFoundError", "CorruptCheckpointError",
    "INPUT_HINTS", "LoadReport", "NonFiniteWeightsError", "PartialWeightsError", "RestrictedUnpickler",
    "UnsafePickleError", "WeightLoadError", "convert_caffe2",
    "convert_checkpoint", "convert_detectron2", "convert_torchvision", "detect_format", "group_names",
    "load_checkpoint", "load_weights", "match_checkpoint", "read_checkpoint", "read_raw", "safe_load", "safe_loads",
]
