"""Dataset names -> (records, DatasetInfo): a plain name -> location table.

Names are resolved under the data root: ``cfg.DATASETS.ROOT``, else ``$DETECTION_DATASETS``, else
``./datasets``. Besides the built-in names, a dataset can be given by paths:
``coco:/path/to/ann.json:/path/to/images``, ``voc:/path/to/VOCstyle_folder:split`` or
``yolo:/path/to/data.yaml:split`` (Ultralytics layout).
See datasets/README.md for the layouts.
"""
from __future__ import annotations

import os

from .coco import coco_info, load_coco_json
from .imagenet_loc import imagenet_loc_info, load_imagenet_loc
from .info import DatasetInfo, DatasetNotFoundError
from .records import filter_empty_records
from .synthetic import load_synthetic, spec_from_cfg, synthetic_info
from .voc import load_voc, voc_info
from .yolo import load_yolo, yolo_info

__all__ = ["ENV_VAR", "data_root", "get_dataset", "get_dataset_info", "list_datasets"]

ENV_VAR = "DETECTION_DATASETS"

# name -> (format, location under the data root); "synthetic" entries hold (kind, split)
_BUILTIN = {
    "coco_2017_train": ("coco", ("coco/annotations/instances_train2017.json", "coco/train2017")),
    "coco_2017_val": ("coco", ("coco/annotations/instances_val2017.json", "coco/val2017")),
    "voc_2007_trainval": ("voc", ("VOC2007", "trainval")),
    "voc_2012_trainval": ("voc", ("VOC2012", "trainval")),
    "voc_2007_test": ("voc", ("VOC2007", "test")),
    "imagenet_loc_train": ("imagenet", ("imagenet", "train")),
    "imagenet_loc_val": ("imagenet", ("imagenet", "val")),
    "synthetic_train": ("synthetic", ("det", "train")),
    "synthetic_val": ("synthetic", ("det", "val")),
    "synthetic_loc_train": ("synthetic", ("loc", "train")),
    "synthetic_loc_val": ("synthetic", ("loc", "val")),
}

_HOW_TO_GET = {
    "coco": "download train2017/val2017 images and annotations_trainval2017 from https://cocodataset.org "
            "and unpack them as coco/{train2017,val2017,annotations}",
    "voc": "download VOCtrainval_06-Nov-2007, VOCtest_06-Nov-2007 and VOCtrainval_11-May-2012 from "
           "http://host.robots.ox.ac.uk/pascal/VOC/ and unpack them (VOCdevkit/VOC2007 or VOC2007)",
    "imagenet": "download the ImageNet Object Localization Challenge (Kaggle) or ILSVRC2012 CLS-LOC "
                "with its bounding boxes, arranged as imagenet/ILSVRC/... with imagenet/LOC_synset_mapping.txt",
}


def data_root(cfg) -> str:
    """Absolute data root: cfg.DATASETS.ROOT, else $DETECTION_DATASETS, else ./datasets."""
    root = cfg.DATASETS.ROOT or os.environ.get(ENV_VAR) or "datasets"
    return os.path.abspath(os.path.expanduser(root))


def list_datasets() -> list[str]:
    """The built-in dataset names."""
    return list(_BUILTIN)


def _resolve(name: str, cfg) -> tuple[str, tuple]:
    """(format, arguments of that format's loader without the dataset name)."""
    if name.startswith(("coco:", "voc:", "yolo:")):
        fmt, _, rest = name.partition(":")
        parts = rest.split(":")
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"custom dataset {name!r}: expected 'coco:/path/ann.json:/path/images', "
                             f"'voc:/path/VOCstyle_folder:split' or 'yolo:/path/data.yaml:split'")
        return fmt, tuple(parts)
    if name not in _BUILTIN:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(_BUILTIN)}, or a custom "
                       f"'coco:/path/ann.json:/path/images' / 'voc:/path/folder:split' / 'yolo:/path/data.yaml:split'")
    fmt, args = _BUILTIN[name]
    root = data_root(cfg)
    if fmt == "coco":
        return fmt, tuple(os.path.join(root, a) for a in args)
    if fmt == "voc":
        candidates = [os.path.join(root, args[0]), os.path.join(root, "VOCdevkit", args[0])]
        folder = next((c for c in candidates if os.path.isdir(c)), None)
        if folder is None:
            raise DatasetNotFoundError(f"no folder {' or '.join(candidates)}")
        return fmt, (folder, args[1])
    if fmt == "imagenet":
        return fmt, (os.path.join(root, args[0]), args[1])
    return fmt, (root, spec_from_cfg(cfg, args[0]), args[1])


_LOADERS = {"coco": load_coco_json, "voc": load_voc, "yolo": load_yolo, "imagenet": load_imagenet_loc,
            "synthetic": load_synthetic}
_INFOS = {"coco": coco_info, "voc": lambda folder, split, name: voc_info(folder, name), "yolo": yolo_info,
          "imagenet": imagenet_loc_info, "synthetic": synthetic_info}


def _call(table: dict, name: str, cfg):
    try:
        fmt, args = _resolve(name, cfg)
        return table[fmt](*args, name)
    except DatasetNotFoundError as e:
        if name not in _BUILTIN:
            raise
        origin = ("cfg.DATASETS.ROOT" if cfg.DATASETS.ROOT else f"${ENV_VAR}" if os.environ.get(ENV_VAR)
                  else "the default ./datasets")
        raise DatasetNotFoundError(
            f"dataset {name!r} not found under the data root {data_root(cfg)} (from {origin}; set DATASETS.ROOT "
            f"or ${ENV_VAR} to change it): {e}. To get it: {_HOW_TO_GET.get(_BUILTIN[name][0], '')}; "
            f"see datasets/README.md") from None


def get_dataset(name: str, cfg, is_train: bool) -> tuple[list[dict], DatasetInfo]:
    """(records, DatasetInfo) of dataset ``name``.

    Training (``is_train``) with DATASETS.FILTER_EMPTY_TRAIN drops images without a usable box
    (logged); evaluation keeps every image. Synthetic sets are generated on first use.
    """
    records, info = _call(_LOADERS, name, cfg)
    if is_train and cfg.DATASETS.FILTER_EMPTY_TRAIN:
        records = filter_empty_records(records, name)
    return records, info


def get_dataset_info(cfg, name: str) -> DatasetInfo:
    """The DatasetInfo of ``name`` without building its records (COCO still parses its json)."""
    return _call(_INFOS, name, cfg)
