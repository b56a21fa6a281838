"""``DatasetInfo``: what the rest of the project needs to know about a dataset besides its records,
and the errors dataset loading raises."""
from __future__ import annotations

import os
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
    json_file: COCO-format ground truth when one exists on disk, else None; ``coco_json`` writes one.
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

    def coco_json(self, records: list[dict], out_dir: str) -> str:
        """Path of a COCO-format ground-truth json for this dataset, for pycocotools.

        ``json_file`` if set; otherwise the ground truth of ``records`` (ignore boxes as iscrowd=1) is
        written to ``out_dir/<name>_gt_coco.json`` and that path returned.
        """
        if self.json_file:
            return self.json_file
        from .coco import write_coco_json  # here, not at the top: coco.py imports this module

        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.name)
        return write_coco_json(records, self, os.path.join(out_dir, f"{safe}_gt_coco.json"))
