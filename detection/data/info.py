"""``DatasetInfo``: what the rest of the project needs to know about a dataset besides its records,
and the errors dataset loading raises."""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DatasetInfo", "DatasetNotFoundError", "DatasetFormatError"]


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not where they were looked for (the message says where and how to get them)."""


class DatasetFormatError(ValueError):
    """An annotation file is malformed or inconsistent (the message names the file and the place)."""


@dataclass
class DatasetInfo:
    """Metadata of one dataset.

    name: the dataset name given to ``get_dataset``.
    class_names: index = contiguous label 0..K-1.
    category_ids: contiguous label -> the dataset's original id (COCO category id; 1..K for VOC,
        ImageNet-LOC and synthetic).
    evaluator_type: "coco", "voc" or "loc".
    json_file: COCO-format ground truth when one exists on disk, else None (``coco.gt_json_for`` writes one).
    image_root: folder the images live under (informational).
    """

    name: str
    class_names: list[str]
    category_ids: list[int]
    evaluator_type: str
    json_file: str | None = None
    image_root: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)
