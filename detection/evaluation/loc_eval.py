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
* ground truth, looked up by image id in, by priority: ``records`` given to the evaluator
  (the project's records: ``image_id``, ``boxes`` (M, 4) xyxy, ``labels`` (M,)); a COCO
  ``json_file`` (``category_ids`` maps contiguous -> original ids); otherwise the output dict
  itself must carry ``"gt_boxes"`` (M, 4) xyxy and ``"gt_labels"`` (M,) contiguous. All boxes
  count, ``iscrowd``/ignore ones included (ImageNet has none).

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
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from torchvision.ops import box_iou

from .coco_eval import load_coco_gt
from detection.utils.comm import all_gather_object, is_main_process
from .report import emit, format_localization_report, write_json

__all__ = ["LocalizationEvaluator", "localization_verdict", "LOC_METRIC_KEYS"]

logger = logging.getLogger(__name__)

LOC_METRIC_KEYS = ["loc_err_gt", "loc_err_top1", "loc_err_top5", "cls_err_top1", "cls_err_top5"]


def _np(x, dtype):
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.is_floating_point():
            x = x.double()
        x = x.numpy()
    return np.asarray(x, dtype=dtype)


def _ranking(output: Dict, topk: int) -> np.ndarray:
    if "topk_labels" in output:
        return _np(output["topk_labels"], np.int64).reshape(-1)[:topk]
    if "scores" in output:
        scores = _np(output["scores"], np.float64).reshape(-1)
        return np.argsort(-scores, kind="stable")[:topk]
    raise KeyError("localization output needs 'topk_labels' (k,) or 'scores' (K,)")


def _box_getter(boxes_per_class):
    if isinstance(boxes_per_class, dict):
        table = {int(k): _np(v, np.float64).reshape(4) for k, v in boxes_per_class.items()}
        return table.get
    dense = _np(boxes_per_class, np.float64)
    if dense.ndim != 2 or dense.shape[1] != 4:
        raise ValueError(f"'boxes_per_class' must be (K, 4) or a dict, got shape {dense.shape}")

    def get(c):
        return dense[c] if 0 <= c < dense.shape[0] else None

    return get


def localization_verdict(
    gt_boxes, gt_labels, ranking, boxes_per_class, topk: int = 5, iou_threshold: float = 0.5
) -> Tuple[bool, bool, bool, bool, bool, int]:
    """One image -> (gt_ok, loc_top1_ok, loc_topk_ok, cls_top1_ok, cls_topk_ok, n_missing_boxes).

    ``ranking``: predicted classes best first; ``boxes_per_class``: (K, 4) or {class: (4,)}.
    """
    gt_boxes = _np(gt_boxes, np.float64).reshape(-1, 4)
    gt_labels = _np(gt_labels, np.int64).reshape(-1)
    ranking = [int(c) for c in np.asarray(ranking).reshape(-1)[:topk]]
    get_box = _box_getter(boxes_per_class)
    true_classes = sorted(set(gt_labels.tolist()))
    missing = 0
    cache: Dict[int, bool] = {}

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
        json_file: optional COCO-format ground truth (path or dict).
        category_ids: contiguous -> original ids (needed with ``json_file``).
        class_names: only for the record (not needed for the metrics).
        output_dir: ``metrics.json`` and ``report.txt`` go there (rank 0).
        topk: k of the top-k errors (5).
        verbose: print (or log) the table.
        records: optional ground truth as the project's records (used before ``json_file``).
        Without ``records`` and ``json_file`` the outputs carry ``gt_boxes``/``gt_labels``.
    """

    def __init__(
        self,
        json_file=None,
        class_names: Optional[Sequence[str]] = None,
        category_ids: Optional[Sequence[int]] = None,
        output_dir: Optional[str] = None,
        topk: int = 5,
        iou_threshold: float = 0.5,
        verbose: bool = True,
        records: Optional[Sequence[Dict]] = None,
    ):
        if records is None and json_file is not None and category_ids is None:
            raise ValueError("LocalizationEvaluator: json_file needs category_ids (contiguous -> original id)")
        self.json_file = json_file
        self._records = records
        self.class_names = list(class_names) if class_names is not None else None
        self.category_ids = [int(c) for c in category_ids] if category_ids is not None else None
        self.output_dir = output_dir
        self.topk = int(topk)
        self.iou_threshold = float(iou_threshold)
        self.verbose = verbose
        self._gt: Optional[Dict[int, Tuple[np.ndarray, np.ndarray]]] = None
        self.reset()

    def reset(self) -> None:
        self._verdicts: Dict[int, Tuple[bool, bool, bool, bool, bool, int]] = {}
        self._skipped: Dict[int, bool] = {}

    @property
    def _has_gt_source(self) -> bool:
        return self._records is not None or self.json_file is not None

    def _gt_of(self, image_id: int):
        if self._gt is None and self._records is not None:
            self._gt = {
                int(r["image_id"]): (
                    _np(r["boxes"], np.float64).reshape(-1, 4),
                    _np(r["labels"], np.int64).reshape(-1),
                )
                for r in self._records
            }
        if self._gt is None:
            coco = load_coco_gt(self.json_file)
            cat_to_label = {c: i for i, c in enumerate(self.category_ids)}
            gt: Dict[int, Tuple[list, list]] = {int(i): ([], []) for i in coco.getImgIds()}
            for a in coco.dataset["annotations"]:
                lab = cat_to_label.get(int(a["category_id"]))
                if lab is None:
                    continue
                x, y, w, h = a["bbox"]
                gt[int(a["image_id"])][0].append((x, y, x + w, y + h))
                gt[int(a["image_id"])][1].append(lab)
            self._gt = {
                k: (np.asarray(b, np.float64).reshape(-1, 4), np.asarray(l, np.int64)) for k, (b, l) in gt.items()
            }
        if image_id not in self._gt:
            src = "records" if self._records is not None else repr(self.json_file)
            raise ValueError(f"image id {image_id} is not in the ground truth ({src})")
        return self._gt[image_id]

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
            if self._has_gt_source:
                gt_boxes, gt_labels = self._gt_of(image_id)
            else:
                if "gt_boxes" not in out or "gt_labels" not in out:
                    raise KeyError(
                        f"image {image_id}: no records/json_file given, so the output needs 'gt_boxes' and 'gt_labels'"
                    )
                gt_boxes, gt_labels = out["gt_boxes"], out["gt_labels"]
            gt_labels = _np(gt_labels, np.int64).reshape(-1)
            if gt_labels.size == 0:
                self._skipped[image_id] = True
                continue
            if "boxes_per_class" not in out:
                raise KeyError(f"image {image_id}: the output needs 'boxes_per_class' ((K, 4) or dict)")
            self._verdicts[image_id] = localization_verdict(
                gt_boxes, gt_labels, _ranking(out, self.topk), out["boxes_per_class"], self.topk, self.iou_threshold
            )

    def evaluate(self) -> Dict:
        """Gather, compute on rank 0, write ``metrics.json``; returns the metrics ({} elsewhere).

        Keys: ``loc_err_gt``, ``loc_err_top1``, ``loc_err_top5`` (named after the default
        k = 5), ``cls_err_top1``, ``cls_err_top5`` (percent), ``num_images``,
        ``num_images_skipped``, ``num_missing_boxes``.
        """
        parts = all_gather_object((self._verdicts, self._skipped))
        if not is_main_process():
            return {}
        verdicts: Dict[int, Tuple] = {}
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
            os.makedirs(self.output_dir, exist_ok=True)
            write_json(os.path.join(self.output_dir, "metrics.json"), metrics)
            with open(os.path.join(self.output_dir, "report.txt"), "w", encoding="utf-8") as f:
                f.write(text + "\n")
        return metrics
