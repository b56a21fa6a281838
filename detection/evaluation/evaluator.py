"""``DetectionEvaluator``: COCOeval (AP, AP50, ...) + PASCAL VOC AP (07 11-point, 2010+ area).

Usage::

    evaluator = DetectionEvaluator("val.json", info.class_names, info.category_ids, output_dir)
    evaluator.reset()
    for batch in loader:
        outputs = model(batch)                     # [{"boxes", "scores", "labels"}] per image
        evaluator.process([r["image_id"] for r in batch], outputs)
    metrics = evaluator.evaluate()                 # rank 0: the metrics; other ranks: {}

Conventions (see also ``voc_eval`` and ``coco_eval``):

* Metrics are percentages (0..100), as Detectron2 reports them. ``AP50`` (the headline,
  mAP@0.5) is exactly ``COCOeval.stats[1] * 100``.
* Evaluation covers the images that were *processed* (over all ranks), not necessarily all
  images of the json: evaluating a subset gives that subset's metrics (a warning says so).
* Undefined values (a class without non-crowd ground truth, an area range without boxes)
  are NaN in the returned dict, ``null`` in metrics.json, and left out of every mean
  (COCOeval drops its -1 entries; the VOC means use ``nanmean``).
* COCOeval keeps the 100 best detections per image and class (``maxDets=100``); the VOC
  metrics use all detections.
* Crowd boxes (``iscrowd: 1``) are COCOeval's crowd regions and VOC's "difficult" boxes.
* Distributed: ``evaluate()`` gathers every rank's predictions with ``all_gather_object``
  (a collective: call it on every rank), keeps each image id once (the first copy, so the
  padding repeats of ``DistributedSampler`` do not count twice), computes on rank 0 and
  writes the files there. Rank 0 returns the metrics; the other ranks return ``{}``.

Files written to ``output_dir`` (rank 0): ``detections.json`` (COCO results: xywh, original
category ids, boxes rounded to 0.01 px, scores to 5 decimals - the metrics are computed from
these rounded values, so ``evaluate_files`` on it reproduces them exactly), ``metrics.json``,
``report.txt`` (the table plus pycocotools' summary), ``confusion_matrix.json``,
``error_breakdown.json`` and, with ``plot=True``, ``per_class_AP50.png``, ``pr_curves.png``,
``f1_curves.png``, ``confusion_matrix.png``, ``errors.png``, ``worst/`` and ``index.html``
(see ``explain.py``).

``evaluate_files`` computes the same metrics and files from a COCO results file and a COCO
ground-truth file, without a model (``tools/eval.py --gt --dt``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence

import numpy as np
from pycocotools.coco import COCO

from detection.utils.comm import all_gather_object, is_main_process
from detection.utils.io import read_json, write_json, write_text

from .coco_eval import (
    COCO_STAT_NAMES,
    coco_stats_percent,
    load_coco_gt,
    outputs_to_coco_results,
    per_class_ap,
    run_coco_eval,
    validate_results,
)
from .explain import explain_detections, explanation_metrics, image_paths_from_coco, write_explanations
from .report import emit, format_detection_report, plot_per_class_ap, plot_pr_curves, write_metrics_json
from .voc_eval import voc_eval_coco

__all__ = ["DETECTION_SCALAR_KEYS", "DetectionEvaluator", "compute_detection_metrics", "evaluate_files"]

#: The scalar metrics of a detection evaluation where higher is better (what TEST.BEST_METRIC may name).
DETECTION_SCALAR_KEYS = (*COCO_STAT_NAMES, "VOC07_mAP50", "VOC_mAP50", "best_f1")

logger = logging.getLogger(__name__)


def _nanmean_percent(values: Iterable[float]) -> float:
    v = np.asarray(list(values), dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(np.mean(v) * 100) if v.size else float("nan")


def compute_detection_metrics(
    coco_gt: COCO,
    results: list[dict],
    class_names: Sequence[str],
    category_ids: Sequence[int],
    img_ids: Sequence[int] | None = None,
    output_dir: str | None = None,
    plot: bool = True,
    verbose: bool = True,
    image_paths: dict[int, str] | None = None,
    iou_threshold: float = 0.5,
    score_thresh: float | None = None,
) -> dict:
    """All detection metrics for a COCO results list (the core of the evaluator and the CLI).

    ``results`` must already be valid for ``coco_gt`` (see ``validate_results``).
    ``img_ids``: the evaluated images (None = all images of the ground truth).
    Writes metrics.json / report.txt / plots and the explanations (``explain.py``:
    confusion matrix, F1 curves, error breakdown, worst images drawn from ``image_paths``
    {image id: file}, index.html) into ``output_dir`` when given. ``iou_threshold`` and
    ``score_thresh`` are the confusion matrix's (see ``explain_detections``).
    """
    class_names = [str(n) for n in class_names]
    category_ids = [int(c) for c in category_ids]
    if len(class_names) != len(category_ids):
        raise ValueError(f"{len(class_names)} class names but {len(category_ids)} category ids")
    if len(set(class_names)) != len(class_names):
        raise ValueError(f"class names are not unique: {class_names}")
    gt_cats = set(coco_gt.getCatIds())
    missing = [c for c in category_ids if c not in gt_cats]
    if missing:
        raise ValueError(f"category ids {missing} are not categories of the ground-truth json")
    extra = sorted(gt_cats - set(category_ids))
    if extra:
        logger.warning("ground-truth categories %s are not model classes: their boxes are ignored", extra)
    n_gt_images = len(coco_gt.getImgIds())
    if img_ids is not None:
        img_ids = sorted({int(i) for i in img_ids})
        if len(img_ids) < n_gt_images:
            logger.warning("evaluating %d of the %d images of the ground truth", len(img_ids), n_gt_images)

    coco_eval, coco_summary = run_coco_eval(coco_gt, results, img_ids=img_ids, cat_ids=category_ids)
    metrics: dict = dict(coco_stats_percent(coco_eval))
    cat_to_name = dict(zip(category_ids, class_names))
    ap50 = per_class_ap(coco_eval, iou=0.5)
    ap = per_class_ap(coco_eval, iou=None)
    # ordered as the contiguous labels
    metrics["per_class_AP50"] = {cat_to_name[c]: ap50[c] for c in category_ids}
    metrics["per_class_AP"] = {cat_to_name[c]: ap[c] for c in category_ids}

    voc = voc_eval_coco(coco_gt.dataset, results, category_ids, image_ids=img_ids)
    metrics["VOC07_mAP50"] = _nanmean_percent(r["ap07"] for r in voc)
    metrics["VOC_mAP50"] = _nanmean_percent(r["ap"] for r in voc)
    metrics["per_class_VOC"] = {
        name: {
            "AP50_07": r["ap07"] * 100,
            "AP50": r["ap"] * 100,
            "num_gt": r["num_gt"],
            "num_det": r["num_det"],
            "num_tp": r["num_tp"],
        }
        for name, r in zip(class_names, voc)
    }
    metrics["num_images"] = len(img_ids) if img_ids is not None else n_gt_images
    metrics["num_detections"] = len(results)
    explained = explain_detections(coco_gt, results, category_ids, img_ids, voc, iou_threshold, score_thresh)
    metrics.update(explanation_metrics(explained, class_names))

    text = format_detection_report(metrics)
    if verbose:
        emit(text)
    if output_dir:
        write_metrics_json(os.path.join(output_dir, "metrics.json"), metrics)
        write_text(os.path.join(output_dir, "report.txt"), text + "\n\npycocotools:\n" + coco_summary)
        if plot:
            try:
                plot_per_class_ap(metrics, os.path.join(output_dir, "per_class_AP50.png"))
                curves = [
                    {"name": n, "recall": r["recall"], "precision": r["precision"], "ap": r["ap"]}
                    for n, r in zip(class_names, voc)
                ]
                plot_pr_curves(curves, os.path.join(output_dir, "pr_curves.png"))
            except Exception as e:  # a plot must never cost the metrics
                logger.warning("could not plot the evaluation results: %r", e)
        write_explanations(explained, metrics, class_names, output_dir, plot=plot, image_paths=image_paths)
    return metrics


class DetectionEvaluator:
    """Collects model outputs, then computes COCO and VOC metrics (see the module docstring).

    Args:
        json_file: COCO-format ground truth (path; a loaded dict or a ``COCO`` also work).
        class_names: contiguous label -> class name.
        category_ids: contiguous label -> original category id of the json.
        output_dir: where the files go (None: nothing written).
        plot: write the PNG plots (and the drawn worst images, index.html).
        verbose: print (or log) the table.
        image_paths: image id -> image file, for drawing the worst images (None: not drawn).
        iou_threshold, score_thresh: the confusion matrix's (``explain_detections``).
    """

    def __init__(
        self,
        json_file,
        class_names: Sequence[str],
        category_ids: Sequence[int],
        output_dir: str | None = None,
        plot: bool = True,
        verbose: bool = True,
        image_paths: dict[int, str] | None = None,
        iou_threshold: float = 0.5,
        score_thresh: float | None = None,
    ):
        if len(class_names) != len(category_ids):
            raise ValueError(f"{len(class_names)} class names but {len(category_ids)} category ids")
        self.json_file = json_file
        self.class_names = [str(n) for n in class_names]
        self.category_ids = [int(c) for c in category_ids]
        self.output_dir = output_dir
        self.plot = plot
        self.verbose = verbose
        self.image_paths = image_paths
        self.iou_threshold = iou_threshold
        self.score_thresh = score_thresh
        self._coco_gt: COCO | None = None
        self.reset()

    @property
    def coco_gt(self) -> COCO:
        if self._coco_gt is None:  # loaded lazily, and only where evaluate() computes
            self._coco_gt = load_coco_gt(self.json_file)
        return self._coco_gt

    def reset(self) -> None:
        self._predictions: dict[int, list[dict]] = {}

    def process(self, image_ids, outputs) -> None:
        """Add one batch. ``image_ids``: original image ids (ints or a tensor);
        ``outputs``: per image ``{"boxes": (N, 4) xyxy original pixels, "scores": (N,),
        "labels": (N,) contiguous}`` (tensors on any device, or numpy). An image id seen
        before keeps its first outputs."""
        if hasattr(image_ids, "tolist"):
            image_ids = image_ids.tolist()
        image_ids = list(image_ids)
        outputs = list(outputs)
        if len(image_ids) != len(outputs):
            raise ValueError(f"{len(image_ids)} image ids but {len(outputs)} outputs")
        for image_id, out in zip(image_ids, outputs):
            image_id = int(image_id)
            if image_id in self._predictions:
                continue
            self._predictions[image_id] = outputs_to_coco_results(image_id, out, self.category_ids)

    def _gather(self) -> dict[int, list[dict]] | None:
        parts = all_gather_object(self._predictions)
        if not is_main_process():
            return None
        merged: dict[int, list[dict]] = {}
        for part in parts:
            for image_id, res in part.items():
                merged.setdefault(image_id, res)
        return merged

    def evaluate(self) -> dict:
        """Gather, compute (rank 0), write files, return the metrics ({} on other ranks).

        Returned keys: ``AP50`` (headline mAP@0.5), ``AP``, ``AP75``, ``APs``, ``APm``,
        ``APl``, ``AR1``, ``AR10``, ``AR100``, ``ARs``, ``ARm``, ``ARl`` (COCOeval, %),
        ``VOC07_mAP50``, ``VOC_mAP50`` (%), ``per_class_AP50`` / ``per_class_AP``
        ({name: %}), ``per_class_VOC`` ({name: {"AP50_07", "AP50", "num_gt", "num_det",
        "num_tp"}}), ``num_images``, ``num_detections``; ``best_f1`` (%),
        ``best_f1_score_thresh``, ``per_class_best_f1``, ``errors``, ``per_class_errors``
        (``explain.explanation_metrics``).
        """
        predictions = self._gather()
        if predictions is None:
            return {}
        if not predictions:
            logger.warning("DetectionEvaluator: no image was processed; nothing to evaluate")
            return {}
        coco_gt = self.coco_gt
        unknown = sorted(set(predictions) - set(coco_gt.getImgIds()))
        if unknown:
            more = f", ... ({len(unknown)} in all)" if len(unknown) > 10 else ""
            raise ValueError(
                f"processed image ids not in the ground truth {self.json_file!r}: {unknown[:10]}{more}"
            )
        results = [r for image_id in sorted(predictions) for r in predictions[image_id]]
        validate_results(results, coco_gt, source="model outputs")
        if self.output_dir:
            write_json(os.path.join(self.output_dir, "detections.json"), results, separators=(",", ":"))
        return compute_detection_metrics(
            coco_gt,
            results,
            self.class_names,
            self.category_ids,
            img_ids=list(predictions),
            output_dir=self.output_dir,
            plot=self.plot,
            verbose=self.verbose,
            image_paths=self.image_paths,
            iou_threshold=self.iou_threshold,
            score_thresh=self.score_thresh,
        )


def evaluate_files(gt_json, dt_json, output_dir: str | None = None, plot: bool = True, verbose: bool = True,
                   skip_invalid: bool = False, iou_threshold: float = 0.5, score_thresh: float | None = None,
                   image_root: str | None = None) -> dict:
    """Metrics (the ``DetectionEvaluator.evaluate`` dict) of the COCO results file ``dt_json``
    against the COCO ground truth ``gt_json``, over *all* images of the ground truth (a results
    file cannot say which images were run).

    Class names come from the ground-truth categories, the contiguous order being the order of
    increasing category id. Raises ``FileNotFoundError`` for a missing file and ``ValueError``
    for malformed json (the message names the file, line and column), an invalid ground truth
    (repeated ids, values that are not finite numbers: the message names the record and field), an
    invalid detection (its index, image id and field) or detections with unknown image or category
    ids (the message names them). ``skip_invalid`` leaves invalid detections out (counted and
    logged) instead of stopping. ``output_dir=None`` writes nothing.

    ``iou_threshold`` / ``score_thresh``: the confusion matrix's (``explain_detections``).
    ``image_root``: where the ground truth's relative ``file_name``s are, for drawing the worst
    images (default: the folder of ``gt_json``; absolute file names are used as they are).
    """
    coco_gt = load_coco_gt(gt_json)
    results = read_json(dt_json, "detections json")
    if isinstance(results, dict) and isinstance(results.get("annotations"), list):
        results = results["annotations"]  # a gt-style dict holding results is accepted
    results = validate_results(results, coco_gt, source=f"detections json {os.fspath(dt_json)}",
                               skip_invalid=skip_invalid)
    cats = sorted(coco_gt.dataset["categories"], key=lambda c: c["id"])
    class_names = [str(c.get("name", c["id"])) for c in cats]
    category_ids = [c["id"] for c in cats]
    if image_root is None and not isinstance(gt_json, dict):
        image_root = os.path.dirname(os.path.abspath(gt_json))
    return compute_detection_metrics(
        coco_gt, results, class_names, category_ids, img_ids=None, output_dir=output_dir, plot=plot, verbose=verbose,
        image_paths=image_paths_from_coco(coco_gt, image_root), iou_threshold=iou_threshold, score_thresh=score_thresh,
    )
