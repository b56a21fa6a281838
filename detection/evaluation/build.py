"""``build_evaluator``: the evaluator for a test dataset (called by ``engine/inference.py``)."""
from __future__ import annotations

from detection.data.coco import gt_json_for

from .evaluator import DetectionEvaluator
from .loc_eval import LocalizationEvaluator

__all__ = ["build_evaluator"]


def build_evaluator(info, records: list[dict], output_dir: str | None, plot: bool = True, **explain_options):
    """``DetectionEvaluator`` for ``info.evaluator_type`` "coco"/"voc", ``LocalizationEvaluator``
    for "loc".

    Detection: the ground truth is ``gt_json_for(info, records, output_dir)`` (the dataset's own
    json when it has one, else one written from ``records`` with ignore boxes as iscrowd=1).
    Localization: the ground truth is ``records``. ``plot``: the detection PNG plots.
    ``explain_options`` (``iou_threshold``, ``score_thresh``) go to ``DetectionEvaluator``.
    """
    kind = getattr(info, "evaluator_type", None)
    if kind in ("coco", "voc"):
        json_file = gt_json_for(info, records, output_dir) if output_dir else info.json_file
        if json_file is None:
            raise ValueError(f"dataset {info.name!r} has no ground-truth json and no output_dir to write one to")
        image_paths = {int(r["image_id"]): r["file_name"] for r in records if "file_name" in r}
        return DetectionEvaluator(json_file, info.class_names, info.category_ids, output_dir=output_dir, plot=plot,
                                  image_paths=image_paths, **explain_options)
    if kind == "loc":
        return LocalizationEvaluator(records, output_dir=output_dir)
    raise ValueError(f"unknown evaluator_type {kind!r} of dataset {getattr(info, 'name', '?')!r} (coco, voc or loc)")
