"""Precision, recall and F1 against the score threshold, per class and overall, at IoU 0.5.

A detection is a true positive exactly as in the VOC AP (``voc_eval.voc_match``: its best
same-class box, IoU >= 0.5, not claimed by a higher-scoring detection; detections on difficult /
crowd boxes are left out). Keeping the detections with score >= ``s`` gives, for every ``s``
that is a detection score, ``precision = TP / kept``, ``recall = TP / num_gt`` and
``F1 = 2 P R / (P + R)`` (0 where P + R = 0). "Overall" pools the detections of all classes
(micro average: one list, one count of ground truth).

The best F1 is the largest F1 over these thresholds; its threshold is the highest score at
which it is reached (on ties, the threshold that keeps fewer detections). A class with no ground truth or no true
positive has no best F1 (``None`` in metrics.json).
"""

from __future__ import annotations

import glob
import os

import numpy as np

from detection.utils.io import read_json
from detection.utils.plotting import new_figure, save_figure

__all__ = ["f1_curve", "f1_curves", "best_f1", "plot_f1_curves", "saved_best_f1_threshold"]


def f1_curve(scores: np.ndarray, tp: np.ndarray, num_gt: int) -> dict:
    """P/R/F1 against score for one list of detections.

    Args:
        scores: (n,) detection scores; tp: (n,) bool, true positive or not; num_gt: ground truth.
    Returns:
        ``{"score", "precision", "recall", "f1"}``, each (m,): one point per distinct score,
        highest first, the values of keeping every detection with score >= that score.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    tp = np.asarray(tp, dtype=bool).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    tp_c = np.cumsum(tp[order])
    kept = np.arange(1, len(s) + 1)
    last_of_tie = np.append(s[1:] != s[:-1], True) if len(s) else np.zeros(0, dtype=bool)
    s, tp_c, kept = s[last_of_tie], tp_c[last_of_tie], kept[last_of_tie]
    precision = tp_c / np.maximum(kept, 1)
    recall = tp_c / num_gt if num_gt > 0 else np.full(len(s), np.nan)
    denom = precision + recall
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1), 0.0)
    if num_gt == 0:
        f1 = np.full(len(s), np.nan)
    return {"score": s, "precision": precision, "recall": recall, "f1": f1}


def best_f1(curve: dict) -> dict:
    """``{"f1", "score_thresh", "precision", "recall"}`` at the best F1 of ``curve`` (the
    highest score on ties), all None when there is none (no ground truth or no true positive)."""
    f1 = curve["f1"]
    if len(f1) == 0 or np.all(np.isnan(f1)) or np.nanmax(f1) <= 0:
        return {"f1": None, "score_thresh": None, "precision": None, "recall": None}
    i = int(np.nanargmax(f1))  # first maximum = highest score
    return {
        "f1": float(f1[i]),
        "score_thresh": float(curve["score"][i]),
        "precision": float(curve["precision"][i]),
        "recall": float(curve["recall"][i]),
    }


def f1_curves(voc_results: list[dict]) -> tuple[list[dict], dict]:
    """Per-class curves and the overall curve from ``voc_eval_arrays``' results (their
    ``scores``, ``tp`` and ``num_gt``). Returns ``(per_class, overall)``."""
    per_class = [f1_curve(r["scores"], r["tp"], r["num_gt"]) for r in voc_results]
    scores = np.concatenate([np.asarray(r["scores"], dtype=np.float64) for r in voc_results] or [np.zeros(0)])
    tp = np.concatenate([np.asarray(r["tp"], dtype=bool) for r in voc_results] or [np.zeros(0, dtype=bool)])
    overall = f1_curve(scores, tp, sum(int(r["num_gt"]) for r in voc_results))
    return per_class, overall


def plot_f1_curves(per_class: list[dict], overall: dict, class_names: list[str], path: str,
                   max_legend: int = 20) -> None:
    """Precision, recall and F1 against the score threshold (three panels; overall in black)."""

    fig = new_figure((13, 4.2))
    axes = [fig.add_subplot(1, 3, k + 1) for k in range(3)]
    legend = len(class_names) <= max_legend
    for key, ax in zip(("precision", "recall", "f1"), axes):
        for name, c in zip(class_names, per_class):
            if len(c["score"]) and not np.all(np.isnan(c[key])):
                ax.plot(c["score"], c[key], lw=0.8, alpha=0.8, label=name if legend else None)
        if len(overall["score"]):
            ax.plot(overall["score"], overall[key], color="black", lw=2, label="overall")
        best = best_f1(overall)
        if best["score_thresh"] is not None:
            ax.axvline(best["score_thresh"], color="black", ls=":", lw=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("score threshold")
        ax.set_title({"precision": "Precision", "recall": "Recall", "f1": "F1"}[key] + " at IoU 0.5")
        ax.grid(alpha=0.3)
    if legend and axes[2].get_legend_handles_labels()[0]:
        axes[2].legend(fontsize=7, loc="lower left")
    save_figure(fig, path, dpi=80)


def saved_best_f1_threshold(folders: list[str]) -> tuple[float, str] | None:
    """The overall best-F1 score threshold of the latest evaluation saved under
    ``<folder>/eval/*/metrics.json``, looking in ``folders`` in order (the first folder with one
    wins: the weights' own folder before OUTPUT_DIR): ``(threshold, metrics.json path)``, or None
    when no such file holds one (unreadable files are passed over)."""
    for folder in folders:
        if not folder:
            continue
        found = glob.glob(os.path.join(glob.escape(folder), "eval", "*", "metrics.json"))
        for path in sorted(found, key=os.path.getmtime, reverse=True):
            try:
                thresh = read_json(path, "metrics file").get("best_f1_score_thresh")
            except (OSError, ValueError, AttributeError):
                continue
            if isinstance(thresh, (int, float)):
                return float(thresh), path
    return None
