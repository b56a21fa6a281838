"""Data pipeline: datasets as lists of records, the mapper (decode + augment), loaders.

Coordinate convention everywhere: boxes are xyxy in continuous pixel coordinates (a box covering
pixel columns 0..9 has x1 = 0, x2 = 10).

Names are imported lazily (PEP 562), so ``detection.data.synthetic`` or ``detection.data.image_io``
can be used without importing torch and albumentations (the generator command starts fast).
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "build": ["build_train_loader", "build_test_loader", "trivial_collate"],
    "catalog": ["get_dataset", "get_dataset_info", "data_root", "list_datasets"],
    "coco": ["load_coco_json", "write_coco_json"],
    "image_io": ["ImageReadError", "read_image"],
    "info": ["DatasetInfo", "DatasetFormatError", "DatasetNotFoundError"],
    "mapper": ["DatasetMapper"],
    "samplers": ["TrainingSampler", "InfiniteBatchSampler", "InferenceSampler"],
    "stats": ["bad_image_count", "data_stats"],
    "yolo": ["load_yolo", "write_yolo"],
    "transforms": ["build_extra_scales_transform", "resize_image", "resize_shortest_edge_size"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = list(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
