"""The confusion matrix of a detector (definition of issue #14, fixed so results compare).

At an IoU threshold ``t`` (0.5) and a score threshold per class ``s[c]``, per image: the
detections with ``score >= s[label]`` are taken in decreasing score (stable on ties); each is
matched to the still-unmatched, non-crowd ground-truth box of ANY class with the highest IoU,
if that IoU is >= ``t``. Then:

* a match with the same class counts in cell (c, c), a true positive;
* a match with another class counts in cell (gt class, predicted class);
* a detection with no match counts in row ``K`` ("background", a false positive) - unless it
  overlaps a crowd / difficult box with IoU >= ``t``: then it is ignored, as in the COCO and
  VOC rules (a crowd box may absorb any number of detections);
* a non-crowd ground-truth box left unmatched counts in column ``K`` ("background", missed).
  Crowd / difficult boxes never count.

Rows are the ground-truth class, columns the predicted class, index ``K`` the background.
IoU is the continuous ``torchvision.ops.box_iou`` (as in ``voc_eval``).
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import box_iou

from detection.utils.plotting import new_figure, save_figure

from .voc_eval import DetArrays, GtArrays, image_groups

__all__ = ["greedy_match", "confusion_matrix", "confusion_json", "plot_confusion_matrix"]


def greedy_match(gt: GtArrays, dt: DetArrays, keep: np.ndarray, iou_threshold: float = 0.5):
    """The greedy any-class matching above, for the detections where ``keep`` (D,) is True.

    Returns ``(det_gt, det_ignored)``, (D,) each: the index of the matched gt box (-1: none or
    not kept) and whether the detection is ignored (on a crowd box, no match).
    """
    D = len(dt.scores)
    det_gt = np.full(D, -1, dtype=np.int64)
    det_ignored = np.zeros(D, dtype=bool)
    gt_t, det_t = torch.from_numpy(gt.boxes), torch.from_numpy(dt.boxes)
    for _, gi, di in image_groups(gt.image, dt.image):
        di = di[keep[di]]
        if len(di) == 0 or len(gi) == 0:
            continue
        di = di[np.argsort(-dt.scores[di], kind="stable")]
        iou = np.nan_to_num(box_iou(det_t[di], gt_t[gi]).numpy(), nan=0.0)
        crowd = gt.difficult[gi]
        on_crowd = (iou[:, crowd] >= iou_threshold).any(axis=1)
        free = ~crowd
        # sequential by nature: each detection takes a box from the ones after it
        for k in range(len(di)):
            row = np.where(free, iou[k], -1.0)
            j = int(np.argmax(row))  # the first box on ties
            if row[j] >= iou_threshold:
                det_gt[di[k]] = gi[j]
                free[j] = False
            elif on_crowd[k]:
                det_ignored[di[k]] = True
    return det_gt, det_ignored


def confusion_matrix(gt: GtArrays, dt: DetArrays, num_classes: int, score_thresh, iou_threshold: float = 0.5):
    """The (K + 1, K + 1) int64 matrix of the module docstring.

    ``score_thresh``: one number, or (K,) per predicted class.
    """
    K = num_classes
    thresh = np.broadcast_to(np.asarray(score_thresh, dtype=np.float64), (K,))
    keep = dt.scores >= thresh[dt.labels] if len(dt.scores) else np.zeros(0, dtype=bool)
    det_gt, det_ignored = greedy_match(gt, dt, keep, iou_threshold)
    matrix = np.zeros((K + 1, K + 1), dtype=np.int64)
    matched = det_gt >= 0
    np.add.at(matrix, (gt.labels[det_gt[matched]], dt.labels[matched]), 1)
    false_pos = keep & ~matched & ~det_ignored
    np.add.at(matrix, (np.full(int(false_pos.sum()), K), dt.labels[false_pos]), 1)
    missed = ~gt.difficult
    missed[det_gt[matched]] = False
    np.add.at(matrix, (gt.labels[missed], np.full(int(missed.sum()), K)), 1)
    return matrix


def confusion_json(matrix: np.ndarray, class_names: list[str], score_thresh, iou_threshold: float) -> dict:
    """What ``confusion_matrix.json`` holds."""
    names = list(class_names) + ["background"]
    thresh = np.broadcast_to(np.asarray(score_thresh, dtype=np.float64), (len(class_names),))
    return {
        "rows": "ground-truth class (last: background = false positive)",
        "columns": "predicted class (last: background = missed ground truth)",
        "class_names": names,
        "iou_threshold": float(iou_threshold),
        "score_thresh": {n: float(t) for n, t in zip(class_names, thresh)},
        "counts": matrix.tolist(),
    }


def plot_confusion_matrix(matrix: np.ndarray, class_names: list[str], path: str) -> None:
    """Counts and row-normalised fractions, side by side."""

    names = list(class_names) + ["background"]
    n = len(names)
    rows = matrix.sum(axis=1, keepdims=True)
    norm = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=np.float64), where=rows > 0)
    side = min(14.0, 2.0 + 0.45 * n)
    fig = new_figure((2 * side + 1, side))
    small = n > 25
    for k, (values, title) in enumerate(((matrix, "counts"), (norm, "row-normalised"))):
        ax = fig.add_subplot(1, 2, k + 1)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        if not small:
            for i in range(n):
                for j in range(n):
                    v = values[i, j]
                    text = f"{v:d}" if values is matrix else f"{v:.2f}"
                    if v:
                        ax.text(j, i, text, ha="center", va="center", fontsize=7,
                                color="white" if norm[i, j] > 0.5 else "black")
        ax.set_xticks(range(n))
        ax.set_yticks(range(n))
        ax.set_xticklabels(names, rotation=90, fontsize=6 if small else 8)
        ax.set_yticklabels(names, fontsize=6 if small else 8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("ground truth")
        ax.set_title(f"Confusion matrix ({title})")
    save_figure(fig, path, dpi=80)
