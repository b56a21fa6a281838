"""ImageNet-style (ILSVRC CLS-LOC) classification + localization errors.

Input, per image (``LocalizationEvaluator.process(image_ids, outputs)``), ``outputs[i]`` a dict:

* ``"topk_labels"``: (k,) int, predicted contiguous classes ranked best first (k >= 5 for
  the top-5 errors; extra entries are ignored, fewer count as misses) -- **or** ``"scores"``:
  (K,) class scores, from which the ranking is taken (stable sort, highest first).
* ``"boxes_per_class"``: the predicted box (xyxy, the same pixel frame as the ground
  truth) of each class, either a dense (K, 4) array/tensor (row c = class c) -- the simplest
  for a per-class box regressor -- or a dict ``{class: (4,)}`` holding at least the top-5
  classes and the ground-truth class(es). A needed class without a box counts as a miss
  (a warning gives the count).
* the ground truth is looked up by image id in the ``records`` given to the evaluator (the
  project's records: ``image_id``, ``boxes`` (M, 4) xyxy, ``labels`` (M,) contiguous). All boxes
  count, ignore ones included (ImageNet has none).

Tensors (any device) or numpy arrays are accepted. Each image is reduced to a few booleans
in ``process``, so nothing large is kept or gathered.

Metrics (percent of the images; lower is better), with "hit(c)" = class c is one of the
image's ground-truth classes and the box for c has IoU >= 0.5 with at least one
ground-truth box of class c (continuous IoU, no +1 pixel):

* ``cls_err_top1`` / ``cls_err_top5``: none of the top-1 / top-5 classes is a true class.
* ``loc_err_top1`` / ``loc_err_top5``: no class c among the top-1 / top-5 has hit(c)
  (the ILSVRC rule: min over the k guesses of the (class, box) error).
* ``loc_err_gt``: given the true class: no true class c has hit(c) (ImageNet images have a
  single class; with several, one localized class is enough).

Images without any ground-truth box are skipped (counted in ``num_images_skipped``).
Distributed gathering follows ``DetectionEvaluator``: every rank calls ``evaluate()``,
each image id counts once, rank 0 returns the metrics and writes ``metrics.json``; other
ranks return ``{}``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import torch
from torchvision.ops import box_iou

from detection.utils.comm import all_gather_object, is_main_process
from detection.utils.io import write_text
from detection.utils.tensors import to_numpy

from .report import emit, format_localization_report, write_metrics_json

__all__ = ["LocalizationEvaluator", "localization_verdict", "LOC_METRIC_KEYS"]

logger = logging.getLogger(__name__)

LOC_METRIC_KEYS = ["loc_err_gt", "loc_err_top1", "loc_err_top5", "cls_err_top1", "cls_err_top5"]


def _ranking(output: dict, topk: int) -> np.ndarray:
    if "topk_labels" in output:
        return to_numpy(output["topk_labels"], np.int64).reshape(-1)[:topk]
    if "scores" in output:
        scores = to_numpy(output["scores"], np.float64).reshape(-1)
        return np.argsort(-scores, kind="stable")[:topk]
    raise KeyError("localization output needs 'topk_labels' (k,) or 'scores' (K,)")


def _box_getter(boxes_per_class):
    if isinstance(boxes_per_class, dict):
        table = {int(k): to_numpy(v, np.float64).reshape(4) for k, v in boxes_per_class.items()}
        return table.get
    dense = to_numpy(boxes_per_class, np.float64)
    if dense.ndim != 2 or dense.shape[1] != 4:
        raise ValueError(f"'boxes_per_class' must be (K, 4) or a dict, got shape {dense.shape}")

    def get(c):
        return dense[c] if 0 <= c < dense.shape[0] else None

    return get


def localization_verdict(
    gt_boxes, gt_labels, ranking, boxes_per_class, topk: int = 5, iou_threshold: float = 0.5
) -> tuple[bool, bool, bool, bool, bool, int]:
    """One image -> (gt_ok, loc_top1_ok, loc_topk_ok, cls_top1_ok, cls_topk_ok, n_missing_boxes).

    ``ranking``: predicted classes best first; ``boxes_per_class``: (K, 4) or {class: (4,)}.
    """
    gt_boxes = to_numpy(gt_boxes, np.float64).reshape(-1, 4)
    gt_labels = to_numpy(gt_labels, np.int64).reshape(-1)
    ranking = [int(c) for c in np.asarray(ranking).reshape(-1)[:topk]]
    get_box = _box_getter(boxes_per_class)
    true_classes = sorted(set(gt_labels.tolist()))
    missing = 0
    cache: dict[int, bool] = {}

    def hit(c: int) -> bool:
        nonlocal missing
        if c in cache:
            return cache[c]
        ok = False
        if c in true_classes:
            box = get_box(c)
            if box is None:
                missing += 1
            else:
                g = gt_boxes[gt_labels == c]
                iou = box_iou(torch.from_numpy(np.asarray(box, np.float64).reshape(1, 4)), torch.from_numpy(g))
                ok = bool((torch.nan_to_num(iou, nan=0.0) >= iou_threshold).any())
        cache[c] = ok
        return ok

    gt_ok = any(hit(c) for c in true_classes)
    cls_top1 = len(ranking) > 0 and ranking[0] in true_classes
    cls_topk = any(c in true_classes for c in ranking)
    loc_top1 = len(ranking) > 0 and hit(ranking[0])
    loc_topk = any(hit(c) for c in ranking)
    return gt_ok, loc_top1, loc_topk, cls_top1, cls_topk, missing


class LocalizationEvaluator:
    """Top-1/top-5 classification and localization errors (see the module docstring).

    Args:
        records: the ground truth, the project's records (``image_id``, ``boxes``, ``labels``).
        output_dir: ``metrics.json`` and ``report.txt`` go there (rank 0; None: nothing written).
        topk: k of the top-k errors (5).
        iou_threshold: a box is right from this IoU with a ground-truth box of its class on.
        verbose: print (or log) the table.
    """

    def __init__(
        self,
        records: Sequence[dict],
        output_dir: str | None = None,
        topk: int = 5,
        iou_threshold: float = 0.5,
        verbose: bool = True,
    ):
        self._gt = {
            int(r["image_id"]): (to_numpy(r["boxes"], np.float64).reshape(-1, 4),
                                 to_numpy(r["labels"], np.int64).reshape(-1))
            for r in records
        }
        self.output_dir = output_dir
        self.topk = int(topk)
        self.iou_threshold = float(iou_threshold)
        self.verbose = verbose
        self.reset()

    def reset(self) -> None:
        self._verdicts: dict[int, tuple[bool, bool, bool, bool, bool, int]] = {}
        self._skipped: dict[int, bool] = {}

    def process(self, image_ids, outputs) -> None:
        """Add a batch: ``image_ids`` (original ids), ``outputs`` (dicts, see module docstring)."""
        if hasattr(image_ids, "tolist"):
            image_ids = image_ids.tolist()
        image_ids, outputs = list(image_ids), list(outputs)
        if len(image_ids) != len(outputs):
            raise ValueError(f"{len(image_ids)} image ids but {len(outputs)} outputs")
        for image_id, out in zip(image_ids, outputs):
            image_id = int(image_id)
            if image_id in self._verdicts or image_id in self._skipped:
                continue
            if image_id not in self._gt:
                raise ValueError(f"image id {image_id} is not in the ground-truth records")
            gt_boxes, gt_labels = self._gt[image_id]
            if gt_labels.size == 0:
                self._skipped[image_id] = True
                continue
            if "boxes_per_class" not in out:
                raise KeyError(f"image {image_id}: the output needs 'boxes_per_class' ((K, 4) or dict)")
            self._verdicts[image_id] = localization_verdict(
                gt_boxes, gt_labels, _ranking(out, self.topk), out["boxes_per_class"], self.topk, self.iou_threshold
            )

    def evaluate(self) -> dict:
        """Gather, compute on rank 0, write ``metrics.json``; returns the metrics ({} elsewhere).

        Keys: ``loc_err_gt``, ``loc_err_top1``, ``loc_err_top5`` (named after the default
        k = 5), ``cls_err_top1``, ``cls_err_top5`` (percent), ``num_images``,
        ``num_images_skipped``, ``num_missing_boxes``.
        """
        parts = all_gather_object((self._verdicts, self._skipped))
        if not is_main_process():
            return {}
        verdicts: dict[int, tuple] = {}
        skipped = set()
        for v, s in parts:
            for k, val in v.items():
                verdicts.setdefault(k, val)
            skipped.update(s)
        skipped -= set(verdicts)
        if not verdicts:
            logger.warning("LocalizationEvaluator: no image with ground truth was processed")
            return {}
        arr = np.array([v[:5] for v in verdicts.values()], dtype=bool)
        n = arr.shape[0]
        err = (1.0 - arr.mean(axis=0)) * 100.0
        metrics = {
            "loc_err_gt": float(err[0]),
            "loc_err_top1": float(err[1]),
            "loc_err_top5": float(err[2]),
            "cls_err_top1": float(err[3]),
            "cls_err_top5": float(err[4]),
            "num_images": n,
            "num_images_skipped": len(skipped),
            "num_missing_boxes": int(sum(v[5] for v in verdicts.values())),
        }
        if metrics["num_missing_boxes"]:
            logger.warning(
                "LocalizationEvaluator: %d needed class boxes were missing (counted as misses)",
                metrics["num_missing_boxes"],
            )
        text = format_localization_report(metrics)
        if self.verbose:
            emit(text)
        if self.output_dir:
            write_metrics_json(os.path.join(self.output_dir, "metrics.json"), metrics)
            write_text(os.path.join(self.output_dir, "report.txt"), text + "\n")
        return metrics
