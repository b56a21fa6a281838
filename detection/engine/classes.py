"""The model's class count, taken from the data and checked against it before anything is built.

``MODEL.ROI_HEADS.NUM_CLASSES`` (``MODEL.PCR.NUM_CLASSES`` in the localization mode) may be 0:
"as many classes as the data has". ``resolve_classes`` turns 0 into the count of the datasets
(or of the checkpoint's saved class names) and stops, naming both sides and the fix, when an
explicit count, the datasets and the checkpoint disagree. train_net.py, eval.py and the
Predictor call it at start-up, before the model and the data loaders are built.
"""
from __future__ import annotations

import copy
import logging
import os
import zipfile
from collections.abc import Sequence

import torch

from detection.data import get_dataset_info

logger = logging.getLogger(__name__)

__all__ = ["ClassMismatchError", "num_classes_key", "saved_class_names", "resolve_classes", "classes_comment"]


class ClassMismatchError(ValueError):
    """The class count or class names of the config, the datasets and a checkpoint disagree."""


def num_classes_key(cfg) -> str:
    """The config key holding the model's class count."""
    return "MODEL.PCR.NUM_CLASSES" if cfg.MODEL.META_ARCHITECTURE == "PCRLocalizer" else "MODEL.ROI_HEADS.NUM_CLASSES"


def _get(cfg, key: str) -> int:
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def _set(cfg, key: str, value: int) -> None:
    *parents, leaf = key.split(".")
    node = cfg
    for part in parents:
        node = node[part]
    node[leaf] = value


def _short(names: Sequence[str], n: int = 8) -> str:
    names = list(names)
    return "[" + ", ".join(names[:n]) + (f", ... ({len(names)} in all)" if len(names) > n else "") + "]"


def _first_difference(a: Sequence[str], b: Sequence[str]) -> str:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"first difference at label {i}: {x!r} vs {y!r}"
    return f"{len(a)} vs {len(b)} classes"


def saved_class_names(path: str) -> list[str] | None:
    """The class names saved in one of our checkpoints (``class_names``), else None.

    Read through a memory map, so the weights are not loaded. Files of other formats (torchvision,
    caffe2, Detectron2) and unreadable files give None: ``load_weights`` reports on those later.
    """
    if not path or not os.path.isfile(path) or not zipfile.is_zipfile(path):
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not ours or corrupt: load_weights names the problem when it reads the file
        return None
    names = data.get("class_names") if isinstance(data, dict) else None
    return [str(n) for n in names] if isinstance(names, list) else None


def _dataset_names(cfg, datasets: Sequence[str]) -> tuple[list[str] | None, str]:
    """Class names shared by ``datasets`` (None if there are none), and where they come from."""
    names, source = None, ""
    for name in datasets:
        info = get_dataset_info(cfg, name)
        if names is None:
            names, source = list(info.class_names), f"dataset {name}"
        elif list(info.class_names) != names:
            raise ClassMismatchError(
                f"{source} has {len(names)} classes {_short(names)} but dataset {name} has "
                f"{len(info.class_names)} {_short(info.class_names)} ({_first_difference(names, info.class_names)}); "
                "training and test datasets must have the same classes in the same order")
    return names, source


def resolve_classes(cfg, datasets: Sequence[str] = (), weights: str = "", fine_tune: bool = False,
                    fallback_dataset: bool = False) -> tuple[object, list[str] | None]:
    """``(cfg, class_names)``: a copy of ``cfg`` with the class count resolved, and the classes.

    datasets: names whose classes the model must have (all must agree; the first is the reference).
    weights: a checkpoint; if it is ours its saved class names must equal the datasets' (and the
        count when there are no datasets), unless ``fine_tune``, where other classes are expected
        (its class-specific layers are then left as initialised by ``load_weights``).
    fallback_dataset: for a count of 0 with neither datasets nor saved names, take the classes of
        ``DATASETS.TRAIN[0]`` (the Predictor; an explicit count is then taken as it is).

    A count of 0 becomes the number of classes found; an explicit count must equal it. Raises
    :class:`ClassMismatchError` naming both sides and the fix.
    """
    key = num_classes_key(cfg)
    given = int(_get(cfg, key))
    if given < 0:
        raise ClassMismatchError(f"{key} is {given}; give the number of classes, or 0 to take it from the data")
    names, source = _dataset_names(cfg, datasets)
    saved = saved_class_names(weights) if weights else None
    if saved is not None and names is not None and saved != names:
        msg = (f"the checkpoint {weights} was trained on {len(saved)} classes {_short(saved)}, but {source} has "
               f"{len(names)} {_short(names)} ({_first_difference(saved, names)})")
        if not fine_tune:
            raise ClassMismatchError(f"{msg}. Use a checkpoint trained on these classes, or a dataset with the "
                                     "checkpoint's classes (same names, same order)")
        logger.warning("%s: fine-tuning; %s", msg, "its class-specific layers are left as initialised"
                       if len(saved) != len(names) else "same count, so its class-specific layers are loaded "
                       "although they were trained for other classes")
    if names is None and saved is not None:
        names, source = saved, f"the checkpoint {weights}"
    if names is None and fallback_dataset and given == 0 and cfg.DATASETS.TRAIN:
        try:
            names, source = _dataset_names(cfg, cfg.DATASETS.TRAIN[:1])
        except (OSError, ValueError, KeyError):  # no dataset on this machine
            names = None
    if names is None:
        if given == 0:
            raise ClassMismatchError(
                f"{key} is 0 (take the count from the data) but there is no dataset or checkpoint with class "
                f"names to take it from; set {key} to the number of classes")
        return cfg, None
    if given == 0:
        cfg = copy.deepcopy(cfg)
        _set(cfg, key, len(names))
        logger.info("%s 0: %d classes from %s: %s", key, len(names), source, _short(names, 20))
    elif given != len(names):
        raise ClassMismatchError(
            f"{key} is {given} but {source} has {len(names)} classes {_short(names)}. Fix: set {key} "
            f"{len(names)}, or 0 to take the count from the data")
    return cfg, names


def classes_comment(names: Sequence[str]) -> str:
    """A YAML comment recording the classes a config was resolved with (for OUTPUT_DIR/config.yaml)."""
    return f"# classes (label 0..{len(names) - 1}): " + ", ".join(names) + "\n"
