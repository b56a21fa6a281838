"""``build_evaluator``: the evaluator for a test dataset (called by ``engine/inference.py``)."""

from __future__ import annotations

from typing import List, Optional

from .evaluator import DetectionEvaluator
from .loc_eval import LocalizationEvaluator

__all__ = ["build_evaluator"]


def build_evaluator(cfg, info, records: List[dict], output_dir: Optional[str], **explain_options):
    """``DetectionEvaluator`` for ``info.evaluator_type`` "coco"/"voc", ``LocalizationEvaluator``
    for "loc".

    Detection: the ground truth is ``info.coco_json(records, output_dir)`` (the dataset's own
    json when it has one, else one written from ``records`` with ignore boxes as iscrowd=1).
    Localization: the ground truth is taken from ``records`` directly. ``cfg`` is accepted
    for the call signature; nothing in it changes the metrics. ``explain_options``
    (``iou_threshold``, ``score_thresh``) go to ``DetectionEvaluator``.
    """
    kind = getattr(info, "evaluator_type", None)
    if kind in ("coco", "voc"):
        json_file = info.coco_json(records, output_dir) if output_dir else info.json_file
        if json_file is None:
            raise ValueError(f"dataset {info.name!r} has no ground-truth json and no output_dir to write one to")
        image_paths = {int(r["image_id"]): r["file_name"] for r in records if "file_name" in r}
        return DetectionEvaluator(json_file, info.class_names, info.category_ids, output_dir=output_dir,
                                  image_paths=image_paths, **explain_options)
    if kind == "loc":
        return LocalizationEvaluator(
            class_names=info.class_names, category_ids=info.category_ids, output_dir=output_dir, records=records
        )
    raise ValueError(f"unknown evaluator_type {kind!r} of dataset {getattr(info, 'name', '?')!r} (coco, voc or loc)")
