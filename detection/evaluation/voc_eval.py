"""PASCAL VOC average precision (mAP@0.5), written after the official VOCdevkit rules.

Rules (VOCdevkit ``VOCevaldet.m``), per class:

* Detections of the class, over all images, are sorted by score, highest first. Ties keep
  their input order (a stable sort, as MATLAB's ``sort``; py-faster-rcnn's ``np.argsort`` is
  not stable).
* Each detection is compared with *all* ground-truth boxes of its image and class (difficult
  ones and already-matched ones included) and takes the one of largest IoU (the first one on
  ties). With ``ovmax >= iou_threshold`` (VOCdevkit: ``>=``; py-faster-rcnn: ``>``):

  - that box difficult            -> the detection is ignored (neither TP nor FP);
  - that box not yet matched      -> TP, and the box becomes matched;
  - that box already matched      -> FP (a duplicate). Note: VOCdevkit does *not* fall back
    to the second-best, still unmatched box; neither do we.

  Otherwise (no box of the class in the image, or IoU too low) -> FP.
* ``num_gt`` (``npos``) counts the non-difficult boxes only. Recall = cumTP / npos,
  precision = cumTP / (cumTP + cumFP).
* 11-point rule (VOC2007): mean over t in {0, 0.1, ..., 1} of the max precision at recall >= t
  (0 when recall never reaches t). The thresholds are the doubles nearest to k/10 (``k / 10``),
  so a recall of exactly 3/10 reaches t = 0.3; py-faster-rcnn's ``np.arange(0, 1.1, 0.1)``
  has 0.30000000000000004 there and would miss it (it only matters when a recall is exactly a
  multiple of 0.1).
* Area rule (VOC2010+): precision made monotone (``mpre[i] = max(mpre[i], mpre[i+1])``) over
  ``mrec = [0, rec, 1]``, ``mpre = [0, prec, 0]``, then ``sum((mrec[i+1] - mrec[i]) * mpre[i+1])``
  over the points where recall changes.

IoU: our boxes are continuous-coordinate ``xyxy`` (x2 = x1 + width), so the IoU is the plain
continuous one (``torchvision.ops.box_iou``), *without* VOCdevkit's ``+1`` pixel convention.
On integer VOC pixel boxes this makes small boxes look slightly worse than VOCdevkit would
(a 10x10 box read as 9x9); numbers differ from the official devkit by a few tenths at most.

A class with no non-difficult ground truth has an undefined AP: it is reported as NaN and
left out of the mean (``np.nanmean``). A class with ground truth but no detection has AP 0.
Unlike COCOeval there is no cap on the number of detections per image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torchvision.ops import box_iou

from detection.utils.tensors import to_numpy

__all__ = ["voc_ap", "voc_match", "voc_eval_arrays", "voc_eval_coco", "coco_to_arrays", "image_groups", "GtArrays",
           "DetArrays"]

#: Recall thresholds of the 11-point rule: the doubles nearest to 0, 0.1, ..., 1.0.
RECALL_THRESHOLDS_11 = np.arange(11, dtype=np.float64) / 10.0


def voc_ap(rec, prec, use_07_metric: bool = False) -> float:
    """AP from a PR curve (``rec``, ``prec``: detections sorted by score).

    ``use_07_metric=True``: the VOC2007 11-point rule; otherwise the VOC2010+ area rule
    (all points). An empty curve gives 0.
    """
    rec = np.asarray(rec, dtype=np.float64).reshape(-1)
    prec = np.asarray(prec, dtype=np.float64).reshape(-1)
    if rec.shape != prec.shape:
        raise ValueError(f"rec and prec differ in length: {rec.shape} vs {prec.shape}")
    if use_07_metric:
        ap = 0.0
        for t in RECALL_THRESHOLDS_11:
            mask = rec >= t
            p = float(np.max(prec[mask])) if mask.any() else 0.0
            ap += p / 11.0
        return float(ap)
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    # precision envelope: mpre[i] = max(mpre[i:]) (right-to-left running maximum)
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def image_groups(gt_image: np.ndarray, det_image: np.ndarray):
    """Yield ``(image id, gt indices, detection indices)`` for every image of either side, in
    increasing id; the indices keep their input order (a stable grouping)."""
    g_order = np.argsort(gt_image, kind="stable")
    d_order = np.argsort(det_image, kind="stable")
    g_sorted, d_sorted = gt_image[g_order], det_image[d_order]
    images = np.union1d(g_sorted, d_sorted)
    g_start, g_end = np.searchsorted(g_sorted, images, "left"), np.searchsorted(g_sorted, images, "right")
    d_start, d_end = np.searchsorted(d_sorted, images, "left"), np.searchsorted(d_sorted, images, "right")
    for k, image in enumerate(images.tolist()):
        yield image, g_order[g_start[k]:g_end[k]], d_order[d_start[k]:d_end[k]]


def _best_gt_per_detection(gt_boxes, gt_labels, gt_image, det_boxes, det_labels, det_image):
    """For each detection: (max IoU with a gt box of its image and class, index of that box).

    Index -1 and IoU -inf where the image has no box of the class.
    """
    nd = det_boxes.shape[0]
    ovmax = np.full(nd, -np.inf, dtype=np.float64)
    jmax = np.full(nd, -1, dtype=np.int64)
    if nd == 0 or gt_boxes.shape[0] == 0:
        return ovmax, jmax
    gt_t = torch.from_numpy(gt_boxes)
    det_t = torch.from_numpy(det_boxes)
    # ties in IoU go to the first box (the gt order inside an image is kept), as in VOCdevkit's
    # ``if ov > ovmax``
    for _, gi, di in image_groups(gt_image, det_image):
        if len(gi) == 0 or len(di) == 0:
            continue
        iou = box_iou(det_t[di], gt_t[gi]).numpy()
        iou = np.nan_to_num(iou, nan=0.0)  # degenerate (zero-area) pairs
        same_class = det_labels[di][:, None] == gt_labels[gi][None, :]
        iou = np.where(same_class, iou, -np.inf)
        best = np.argmax(iou, axis=1)  # first maximum on ties
        best_iou = iou[np.arange(len(di)), best]
        has = np.isfinite(best_iou)
        ovmax[di] = best_iou
        jmax[di] = np.where(has, gi[best], -1)
    return ovmax, jmax


def voc_match(gt_boxes, gt_labels, gt_image, gt_difficult, det_boxes, det_scores, det_labels, det_image,
              iou_threshold: float = 0.5):
    """The VOC decision for every detection (the rules of the module docstring), as numpy arrays.

    Returns ``(ovmax, jmax, tp, ignored)``, each (D,): the largest IoU with a gt box of the
    detection's image and class (-inf: none), the index of that box (-1: none), whether the
    detection is a true positive, and whether it is ignored (its box is difficult). The rest
    are false positives. Arguments as in :func:`voc_eval_arrays` (already numpy).
    """
    ovmax, jmax = _best_gt_per_detection(gt_boxes, gt_labels, gt_image, det_boxes, det_labels, det_image)
    hit = ovmax >= iou_threshold  # implies jmax >= 0
    ignored = np.zeros(len(ovmax), dtype=bool)
    ignored[hit] = gt_difficult[jmax[hit]]
    # A candidate is a TP iff it is the first, in score order, to claim its best gt box; later
    # claimants of the same box are duplicates (FP). A box has one class, so one global stable
    # score order gives each class the order of its own stable sort.
    order = np.argsort(-det_scores, kind="stable")
    cand = order[(hit & ~ignored)[order]]
    _, first = np.unique(jmax[cand], return_index=True)
    tp = np.zeros(len(ovmax), dtype=bool)
    tp[cand[first]] = True
    return ovmax, jmax, tp, ignored


def voc_eval_arrays(
    gt_boxes,
    gt_labels,
    gt_image,
    det_boxes,
    det_scores,
    det_labels,
    det_image,
    num_classes: int,
    gt_difficult=None,
    iou_threshold: float = 0.5,
) -> list[dict]:
    """VOC AP of every class from flat arrays.

    Args:
        gt_boxes: (G, 4) xyxy; gt_labels: (G,) int in [0, num_classes); gt_image: (G,) int
            image key (any integer id); gt_difficult: (G,) bool (None = none difficult).
        det_boxes: (D, 4) xyxy; det_scores: (D,); det_labels: (D,) int; det_image: (D,) int.
            Detections of images without ground truth are all FP.
        num_classes: K.
    Returns:
        a list of K dicts: ``{"ap": area-rule AP, "ap07": 11-point AP (fractions 0..1, NaN
        when num_gt == 0), "num_gt": non-difficult gt count, "num_det": detections of the
        class, "num_ignored": detections matched to difficult boxes, "num_tp": TPs,
        "recall": (n,), "precision": (n,), "scores": (n,), "tp": (n,) bool}``, the curves over the
        non-ignored detections in score order.
    """
    gt_boxes = to_numpy(gt_boxes, np.float64).reshape(-1, 4)
    gt_labels = to_numpy(gt_labels, np.int64).reshape(-1)
    gt_image = to_numpy(gt_image, np.int64).reshape(-1)
    det_boxes = to_numpy(det_boxes, np.float64).reshape(-1, 4)
    det_scores = to_numpy(det_scores, np.float64).reshape(-1)
    det_labels = to_numpy(det_labels, np.int64).reshape(-1)
    det_image = to_numpy(det_image, np.int64).reshape(-1)
    if gt_difficult is None:
        gt_difficult = np.zeros(gt_boxes.shape[0], dtype=bool)
    else:
        gt_difficult = to_numpy(gt_difficult, bool).reshape(-1)
    G, D = gt_boxes.shape[0], det_boxes.shape[0]
    for name, arr, n in (("gt_labels", gt_labels, G), ("gt_image", gt_image, G),
                         ("gt_difficult", gt_difficult, G), ("det_scores", det_scores, D),
                         ("det_labels", det_labels, D), ("det_image", det_image, D)):
        if arr.shape[0] != n:
            raise ValueError(f"{name} has {arr.shape[0]} entries, expected {n}")

    ovmax, jmax, tp, ignored = voc_match(gt_boxes, gt_labels, gt_image, gt_difficult, det_boxes, det_scores,
                                         det_labels, det_image, iou_threshold)

    results = []
    for c in range(num_classes):
        npos = int(np.count_nonzero((gt_labels == c) & ~gt_difficult))
        idx = np.nonzero(det_labels == c)[0]
        order = idx[np.argsort(-det_scores[idx], kind="stable")]
        keep = ~ignored[order]
        tp_k = tp[order][keep].astype(np.float64)
        fp_k = 1.0 - tp_k
        tp_c = np.cumsum(tp_k)
        fp_c = np.cumsum(fp_k)
        prec = tp_c / np.maximum(tp_c + fp_c, np.finfo(np.float64).eps)
        if npos > 0:
            rec = tp_c / npos
            ap = voc_ap(rec, prec, use_07_metric=False)
            ap07 = voc_ap(rec, prec, use_07_metric=True)
        else:
            rec = np.full_like(tp_c, np.nan)
            ap = ap07 = float("nan")
        results.append({
            "ap": ap,
            "ap07": ap07,
            "num_gt": npos,
            "num_det": int(len(order)),
            "num_ignored": int(np.count_nonzero(ignored[order])),
            "num_tp": int(np.count_nonzero(tp[order])),
            "recall": rec,
            "precision": prec,
            "scores": det_scores[order][keep],
            "tp": tp[order][keep],
        })
    return results


def voc_eval_coco(
    gt_dataset: dict,
    results: Sequence[dict],
    category_ids: Sequence[int],
    image_ids: Sequence[int] | None = None,
    iou_threshold: float = 0.5,
) -> list[dict]:
    """VOC AP from a COCO-format ground-truth dict and a COCO results list.

    ``gt_dataset``: the loaded json (``images``, ``annotations`` with ``bbox`` xywh,
    ``category_id``, ``iscrowd``). Boxes with ``iscrowd: 1`` are VOC's "difficult" boxes.
    ``results``: ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}]``.
    ``category_ids``: contiguous label -> original id; the returned list follows it.
    ``image_ids``: evaluate only these images (None = all images of ``gt_dataset``).
    Categories not in ``category_ids`` are ignored on both sides.
    """
    gt, dt = coco_to_arrays(gt_dataset, results, category_ids, image_ids)
    return voc_eval_arrays(gt.boxes, gt.labels, gt.image, dt.boxes, dt.scores, dt.labels, dt.image,
                           num_classes=len(category_ids), gt_difficult=gt.difficult, iou_threshold=iou_threshold)


class GtArrays(NamedTuple):
    """Ground truth as flat arrays: boxes (G, 4) xyxy original pixels, labels (G,) contiguous,
    image (G,) image ids, difficult (G,) bool (COCO ``iscrowd``)."""

    boxes: np.ndarray
    labels: np.ndarray
    image: np.ndarray
    difficult: np.ndarray


class DetArrays(NamedTuple):
    """Detections as flat arrays: boxes (D, 4) xyxy, scores (D,), labels (D,), image (D,)."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    image: np.ndarray


def coco_to_arrays(
    gt_dataset: dict,
    results: Sequence[dict],
    category_ids: Sequence[int],
    image_ids: Sequence[int] | None = None,
) -> tuple[GtArrays, DetArrays]:
    """A COCO ground-truth dict and results list as flat arrays (arguments as in
    :func:`voc_eval_coco`; categories not in ``category_ids`` and images not in ``image_ids``
    are left out)."""
    cat_to_label = {int(c): i for i, c in enumerate(category_ids)}
    img_set = None if image_ids is None else {int(i) for i in image_ids}

    def _collect(items, with_score):
        boxes, labels, images, extra = [], [], [], []
        for a in items:
            lab = cat_to_label.get(int(a["category_id"]))
            if lab is None:
                continue
            img = int(a["image_id"])
            if img_set is not None and img not in img_set:
                continue
            x, y, w, h = a["bbox"]
            boxes.append((x, y, x + w, y + h))
            labels.append(lab)
            images.append(img)
            extra.append(float(a["score"]) if with_score else bool(a.get("iscrowd", 0)))
        return (np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.asarray(labels, dtype=np.int64),
                np.asarray(images, dtype=np.int64), np.asarray(extra))

    gb, gl, gi, gd = _collect(gt_dataset.get("annotations", []), with_score=False)
    db, dl, di, ds = _collect(results, with_score=True)
    return GtArrays(gb, gl, gi, gd.astype(bool)), DetArrays(db, ds.astype(np.float64), dl, di)
