"""Where the AP50 goes: an error breakdown in the spirit of TIDE (Bolya et al., ECCV 2020).

Every detection gets one outcome, and every ground-truth box is found or missed, at the
foreground IoU ``t_f = 0.5`` and the background IoU ``t_b = 0.1``. IoUs are taken with the
non-crowd (non-difficult) boxes of the same image: ``s`` the largest IoU with a box of the
detection's class, ``o`` the largest with a box of another class.

* true positive / ignored: exactly as in the VOC AP (``voc_eval.voc_match``).
* Each other detection (a false positive of the VOC AP) gets the first type that applies:

  1. ``localization``: ``t_b <= s < t_f`` (right class, poor box);
  2. ``classification``: ``o >= t_f`` (good box on an object of another class);
  3. ``duplicate``: ``s >= t_f`` (its box was taken by a higher-scoring detection);
  4. ``both``: ``t_b <= o < t_f`` (wrong class and poor box);
  5. ``background``: everything else (IoU < ``t_b`` with every box).

* ``missed``: a non-crowd box that is not matched by a true positive and is not the target
  (the largest-IoU box) of a localization or classification error.

The AP50 gained by fixing one type alone is the VOC mAP@0.5 (area rule, ``voc_eval_arrays``)
re-computed with that type corrected, minus the original one:

* localization: the detection's box becomes its target's box; classification: its class
  becomes its target's class. If the target is already found by a true positive, or by a
  higher-scoring detection being fixed the same way, the detection is removed instead (it
  would be a duplicate).
* duplicate, both, background: those detections are removed.
* missed: those ground-truth boxes are removed (fewer boxes to find).

Counts: a detection counts for its predicted class, a missed box for its own class.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import box_iou

from detection.utils.plotting import new_figure, save_figure

from .voc_eval import DetArrays, GtArrays, image_groups, voc_eval_arrays, voc_match

__all__ = ["ERROR_TYPES", "classify_detections", "error_breakdown", "plot_error_breakdown"]

#: Error types, in the order of the rules (``missed`` is about ground truth).
ERROR_TYPES = ["classification", "localization", "both", "duplicate", "background", "missed"]
#: Outcome codes of :func:`classify_detections`.
TP, IGNORED, CLS, LOC, BOTH, DUP, BKG = range(7)


def _best_ious(gt: GtArrays, dt: DetArrays):
    """(s, s_idx, o, o_idx), (D,) each: best IoU with a non-crowd box of the same / another
    class and its index (-1 and IoU 0 when there is none)."""
    D = len(dt.scores)
    s, o = np.zeros(D), np.zeros(D)
    s_idx, o_idx = np.full(D, -1, dtype=np.int64), np.full(D, -1, dtype=np.int64)
    gt_t, det_t = torch.from_numpy(gt.boxes), torch.from_numpy(dt.boxes)
    for _, gi, di in image_groups(gt.image, dt.image):
        gi = gi[~gt.difficult[gi]]
        if len(gi) == 0 or len(di) == 0:
            continue
        iou = np.nan_to_num(box_iou(det_t[di], gt_t[gi]).numpy(), nan=0.0)
        same = dt.labels[di][:, None] == gt.labels[gi][None, :]
        for best, idx, mask in ((s, s_idx, same), (o, o_idx, ~same)):
            masked = np.where(mask, iou, -1.0)
            j = np.argmax(masked, axis=1)
            v = masked[np.arange(len(di)), j]
            best[di] = np.maximum(v, 0.0)
            idx[di] = np.where(v >= 0, gi[j], -1)
    return s, s_idx, o, o_idx


def classify_detections(gt: GtArrays, dt: DetArrays, fg_iou: float = 0.5, bg_iou: float = 0.1):
    """The outcome of every detection and box (rules of the module docstring).

    Returns ``(outcome, target, tp_gt, missed)``: outcome (D,) codes ``TP .. BKG``; target (D,)
    the box a true positive, localization or classification error is about (-1 otherwise);
    tp_gt (G,) bool, found by a true positive; missed (G,) bool.
    """
    ovmax, jmax, tp, ignored = voc_match(gt.boxes, gt.labels, gt.image, gt.difficult, dt.boxes, dt.scores,
                                         dt.labels, dt.image, fg_iou)
    s, s_idx, o, o_idx = _best_ious(gt, dt)
    fp = ~tp & ~ignored
    loc = fp & (s >= bg_iou) & (s < fg_iou)
    cls = fp & ~loc & (o >= fg_iou)
    dup = fp & ~loc & ~cls & (s >= fg_iou)
    both = fp & ~loc & ~cls & ~dup & (o >= bg_iou)
    outcome = np.full(len(dt.scores), BKG, dtype=np.int64)
    for code, mask in ((TP, tp), (IGNORED, ignored), (CLS, cls), (LOC, loc), (BOTH, both), (DUP, dup)):
        outcome[mask] = code
    target = np.full(len(dt.scores), -1, dtype=np.int64)
    target[tp], target[loc], target[cls] = jmax[tp], s_idx[loc], o_idx[cls]
    tp_gt = np.zeros(len(gt.labels), dtype=bool)
    tp_gt[jmax[tp]] = True
    covered = tp_gt.copy()
    covered[target[loc | cls]] = True
    return outcome, target, tp_gt, ~covered & ~gt.difficult


def _voc_aps(gt: GtArrays, dt: DetArrays, num_classes: int, iou: float) -> np.ndarray:
    res = voc_eval_arrays(gt.boxes, gt.labels, gt.image, dt.boxes, dt.scores, dt.labels, dt.image,
                          num_classes=num_classes, gt_difficult=gt.difficult, iou_threshold=iou)
    return np.array([r["ap"] for r in res], dtype=np.float64)


def _select(dt: DetArrays, keep: np.ndarray) -> DetArrays:
    return DetArrays(dt.boxes[keep], dt.scores[keep], dt.labels[keep], dt.image[keep])


def _fix_onto_target(gt: GtArrays, dt: DetArrays, mask, target, tp_gt, move_box: bool) -> DetArrays:
    """Detections in ``mask`` take their target's box (``move_box``) or class; those whose
    target is already found, or taken by a higher-scoring one of them, are removed."""
    idx = np.nonzero(mask)[0]
    idx = idx[np.argsort(-dt.scores[idx], kind="stable")]
    _, first = np.unique(target[idx], return_index=True)
    winner = np.zeros(len(idx), dtype=bool)
    winner[first] = True
    winner &= ~tp_gt[target[idx]]
    boxes, labels = dt.boxes.copy(), dt.labels.copy()
    fixed = idx[winner]
    if move_box:
        boxes[fixed] = gt.boxes[target[fixed]]
    else:
        labels[fixed] = gt.labels[target[fixed]]
    keep = np.ones(len(dt.scores), dtype=bool)
    keep[idx[~winner]] = False
    return _select(DetArrays(boxes, dt.scores, labels, dt.image), keep)


def error_breakdown(gt: GtArrays, dt: DetArrays, num_classes: int, fg_iou: float = 0.5, bg_iou: float = 0.1):
    """Counts and AP50 gains of every error type (module docstring), per class and overall.

    Returns ``{"counts": {type: n}, "AP50_gain": {type: %}, "per_class": [{"counts",
    "AP50_gain"}] * K, "outcome", "target", "tp_gt", "missed"}``; the gains are in percent
    points of the VOC mAP@0.5 (per class: of that class's AP; NaN without ground truth).
    """
    outcome, target, tp_gt, missed = classify_detections(gt, dt, fg_iou, bg_iou)
    base = _voc_aps(gt, dt, num_classes, fg_iou)
    fixed = {
        "classification": _fix_onto_target(gt, dt, outcome == CLS, target, tp_gt, move_box=False),
        "localization": _fix_onto_target(gt, dt, outcome == LOC, target, tp_gt, move_box=True),
        "both": _select(dt, outcome != BOTH),
        "duplicate": _select(dt, outcome != DUP),
        "background": _select(dt, outcome != BKG),
    }
    codes = {"classification": CLS, "localization": LOC, "both": BOTH, "duplicate": DUP, "background": BKG}
    gains = {}
    for name in ERROR_TYPES:
        if name == "missed":
            keep = ~missed
            g = GtArrays(gt.boxes[keep], gt.labels[keep], gt.image[keep], gt.difficult[keep])
            aps = _voc_aps(g, dt, num_classes, fg_iou)
        else:
            aps = _voc_aps(gt, fixed[name], num_classes, fg_iou)
        gains[name] = (aps - base) * 100
    per_class = []
    for c in range(num_classes):
        counts = {n: int(np.count_nonzero((outcome == codes[n]) & (dt.labels == c))) for n in codes}
        counts["missed"] = int(np.count_nonzero(missed & (gt.labels == c)))
        per_class.append({"counts": counts, "AP50_gain": {n: float(gains[n][c]) for n in ERROR_TYPES}})
    overall_counts = {n: sum(p["counts"][n] for p in per_class) for n in ERROR_TYPES}
    with np.errstate(invalid="ignore"):
        overall_gain = {
            n: float(np.nanmean(gains[n])) if not np.all(np.isnan(gains[n])) else float("nan") for n in ERROR_TYPES
        }
    return {"counts": overall_counts, "AP50_gain": overall_gain, "per_class": per_class,
            "outcome": outcome, "target": target, "tp_gt": tp_gt, "missed": missed}


def plot_error_breakdown(breakdown: dict, path: str) -> None:
    """Counts and AP50 gains of the error types (two bar panels)."""

    fig = new_figure((10, 3.6))
    y = np.arange(len(ERROR_TYPES))
    for k, (key, title) in enumerate((("counts", "count"), ("AP50_gain", "mAP@0.5 gained by fixing it (points)"))):
        ax = fig.add_subplot(1, 2, k + 1)
        values = np.nan_to_num(np.array([breakdown[key][n] for n in ERROR_TYPES], dtype=np.float64))
        ax.barh(y, values, color=["#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#7f7f7f", "#1f77b4"])
        for yy, v in zip(y, values):
            ax.text(v, yy, f" {v:.0f}" if key == "counts" else f" {v:.2f}", va="center", fontsize=8)
        ax.set_yticks(y)
        ax.set_yticklabels(ERROR_TYPES)
        ax.invert_yaxis()
        ax.set_title(title)
        ax.grid(axis="x", alpha=0.3)
    save_figure(fig, path, dpi=80)
