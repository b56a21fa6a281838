"""Evaluation: COCO AP (pycocotools' COCOeval), PASCAL VOC AP, ImageNet-style localization.

* :class:`DetectionEvaluator` - model outputs -> metrics.json / detections.json / table.
* :class:`LocalizationEvaluator` - top-1/top-5 classification and localization errors.
* :func:`build_evaluator` - the evaluator for a dataset's ``DatasetInfo`` (info, records, dir).
* :func:`evaluate_files` - a COCO results file against a COCO ground-truth file (``tools/eval.py --gt --dt``).
* :func:`voc_ap`, :func:`voc_eval_arrays`, :func:`voc_eval_coco` - the VOC rules.
* What explains the metrics (``explain.py``, written by every detection evaluation):
  :func:`confusion_matrix`, :func:`f1_curves` / :func:`best_f1` (P/R/F1 against score),
  :func:`error_breakdown` (TIDE-style error types), worst images, ``index.html``.
"""

from .build import build_evaluator
from .confusion import confusion_matrix
from .error_types import error_breakdown
from .coco_eval import load_coco_gt, outputs_to_coco_results, run_coco_eval
from .evaluator import DetectionEvaluator, compute_detection_metrics, evaluate_files
from .loc_eval import LocalizationEvaluator, localization_verdict
from .thresholds import best_f1, f1_curves
from .voc_eval import voc_ap, voc_eval_arrays, voc_eval_coco

__all__ = [
    "build_evaluator",
    "DetectionEvaluator",
    "LocalizationEvaluator",
    "evaluate_files",
    "compute_detection_metrics",
    "load_coco_gt",
    "outputs_to_coco_results",
    "run_coco_eval",
    "localization_verdict",
    "voc_ap",
    "voc_eval_arrays",
    "voc_eval_coco",
    "confusion_matrix",
    "error_breakdown",
    "f1_curves",
    "best_f1",
]
