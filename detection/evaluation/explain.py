"""What explains the AP: best-F1 thresholds, confusion matrix, error breakdown, worst images
and the HTML page, computed next to the metrics by ``compute_detection_metrics``.

Files written into the evaluation folder: ``confusion_matrix.json``, ``error_breakdown.json``
and, with plots, ``confusion_matrix.png``, ``f1_curves.png``, ``errors.png``, ``worst/``
(the worst images drawn, ``contact_sheet.jpg``) and ``index.html``.
"""

from __future__ import annotations

import logging
import os

import numpy as np
from pycocotools.coco import COCO

from .confusion import confusion_json, confusion_matrix, plot_confusion_matrix
from .error_types import ERROR_TYPES, error_breakdown, plot_error_breakdown
from .html_report import write_html_report
from .report import write_json
from .thresholds import best_f1, f1_curves, plot_f1_curves
from .voc_eval import coco_to_arrays
from .worst_images import rank_images, write_worst_images

__all__ = ["explain_detections", "explanation_metrics", "write_explanations", "image_paths_from_coco"]

logger = logging.getLogger(__name__)


def explain_detections(coco_gt: COCO, results: list[dict], category_ids, img_ids, voc: list[dict],
                       iou_threshold: float = 0.5, score_thresh: float | None = None) -> dict:
    """Everything of the module docstring but the files, from the evaluated ground truth,
    results and the VOC results (``voc_eval_coco``, IoU 0.5) of the same images.

    ``iou_threshold`` is the confusion matrix's; the F1 curves and error types are at IoU 0.5
    (as the VOC AP). ``score_thresh`` (None: per class, the best-F1 threshold of the class,
    else the overall one, else 0) selects the detections of the confusion matrix and drawings.
    """
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"the confusion matrix's IoU threshold must be in (0, 1], got {iou_threshold}")
    gt, dt = coco_to_arrays(coco_gt.dataset, results, category_ids, img_ids)
    K = len(category_ids)
    curves, overall = f1_curves(voc)
    best = [best_f1(c) for c in curves]
    overall_best = best_f1(overall)
    if score_thresh is not None:
        thresholds = np.full(K, float(score_thresh))
    else:
        fallback = overall_best["score_thresh"] if overall_best["score_thresh"] is not None else 0.0
        thresholds = np.array([b["score_thresh"] if b["score_thresh"] is not None else fallback for b in best])
    breakdown = error_breakdown(gt, dt, K)
    image_ids = img_ids if img_ids is not None else coco_gt.getImgIds()
    return {
        "gt": gt, "dt": dt, "curves": curves, "overall": overall, "best": best, "overall_best": overall_best,
        "thresholds": thresholds, "iou_threshold": float(iou_threshold),
        "confusion": confusion_matrix(gt, dt, K, thresholds, iou_threshold),
        "breakdown": breakdown,
        "ranking": rank_images(gt, dt, breakdown["outcome"], breakdown["target"], thresholds, image_ids),
    }


def _percent(v):
    return None if v is None else v * 100


def explanation_metrics(ex: dict, class_names: list[str]) -> dict:
    """The metrics.json entries: ``best_f1`` (%), ``best_f1_score_thresh``,
    ``per_class_best_f1`` ({name: {"best_f1", "best_f1_score_thresh", "precision", "recall"}},
    %), ``errors`` ({"counts", "AP50_gain"}) and ``per_class_errors`` ({name: the same})."""
    ob = ex["overall_best"]
    return {
        "best_f1": _percent(ob["f1"]),
        "best_f1_score_thresh": ob["score_thresh"],
        "per_class_best_f1": {
            n: {"best_f1": _percent(b["f1"]), "best_f1_score_thresh": b["score_thresh"],
                "precision": _percent(b["precision"]), "recall": _percent(b["recall"])}
            for n, b in zip(class_names, ex["best"])
        },
        "errors": {"counts": ex["breakdown"]["counts"], "AP50_gain": ex["breakdown"]["AP50_gain"]},
        "per_class_errors": dict(zip(class_names, ex["breakdown"]["per_class"])),
    }


def image_paths_from_coco(coco_gt: COCO, image_root: str | None) -> dict:
    """image id -> file of a COCO ground truth: ``file_name`` as is when absolute, else under
    ``image_root`` (None: the file name as given)."""
    out = {}
    for img in coco_gt.dataset["images"]:
        name = str(img.get("file_name", ""))
        out[int(img["id"])] = name if os.path.isabs(name) or image_root is None else os.path.join(image_root, name)
    return out


def write_explanations(ex: dict, metrics: dict, class_names: list[str], output_dir: str, plot: bool = True,
                       image_paths: dict | None = None, num_worst: int = 16) -> None:
    """The files of the module docstring (plots and pages only with ``plot``)."""
    write_json(os.path.join(output_dir, "confusion_matrix.json"),
               confusion_json(ex["confusion"], class_names, ex["thresholds"], ex["iou_threshold"]))
    write_json(os.path.join(output_dir, "error_breakdown.json"), {
        "error_types": ERROR_TYPES, "fg_iou": 0.5, "bg_iou": 0.1,
        "counts": ex["breakdown"]["counts"], "AP50_gain": ex["breakdown"]["AP50_gain"],
        "per_class": dict(zip(class_names, ex["breakdown"]["per_class"])),
        "images_worst_first": ex["ranking"],
    })
    if not plot:
        return
    worst = []
    try:
        plot_confusion_matrix(ex["confusion"], class_names, os.path.join(output_dir, "confusion_matrix.png"))
        plot_f1_curves(ex["curves"], ex["overall"], class_names, os.path.join(output_dir, "f1_curves.png"))
        plot_error_breakdown(ex["breakdown"], os.path.join(output_dir, "errors.png"))
        if image_paths:
            b = ex["breakdown"]
            worst = write_worst_images(os.path.join(output_dir, "worst"), ex["ranking"], image_paths, ex["gt"],
                                       ex["dt"], b["outcome"], b["target"], ex["thresholds"], class_names,
                                       num=num_worst)
    except Exception as e:  # a picture must never cost the metrics
        logger.warning("could not draw the evaluation explanations: %r", e)
    write_html_report(os.path.join(output_dir, "index.html"), metrics, class_names, ex["thresholds"],
                      ex["iou_threshold"], worst)
