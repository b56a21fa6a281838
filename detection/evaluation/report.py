"""Text tables, metrics.json writing and plots for the evaluation results."""

from __future__ import annotations

import logging
import math

import numpy as np

from detection.utils.io import write_json
from detection.utils.plotting import new_figure, save_figure

logger = logging.getLogger("detection.evaluation")


def emit(text: str) -> None:
    """Log ``text`` at INFO when logging is set up (a handler on this logger or an ancestor),
    print it otherwise."""
    if logger.isEnabledFor(logging.INFO) and logger.hasHandlers():
        logger.info("\n" + text)
    else:
        print(text, flush=True)


__all__ = ["emit", "format_detection_report", "format_localization_report", "write_metrics_json", "jsonable",
           "plot_per_class_ap", "plot_pr_curves"]


def _fmt(v, width=7, digits=2):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return f"{'nan':>{width}}"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):>{width}d}"
    return f"{v:>{width}.{digits}f}"


def jsonable(obj):
    """Recursively turn numpy scalars/arrays into python values and NaN/inf into None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    return obj


def write_metrics_json(path: str, metrics: dict, indent: int | None = 2) -> None:
    """Write strict json (NaN -> null), atomically."""
    write_json(path, jsonable(metrics), indent=indent, allow_nan=False)


def format_detection_report(metrics: dict) -> str:
    """The readable table: headline mAP@0.5, the COCO line, the VOC lines, per-class table."""
    lines = []
    n_img, n_det = metrics.get("num_images"), metrics.get("num_detections")
    lines.append(f"Detection evaluation: {n_img} images, {n_det} detections, {len(metrics.get('per_class_AP50', {}))} classes")
    lines.append(f"  mAP@0.5 (COCOeval AP50, 101-point) = {_fmt(metrics['AP50'], 0)}")
    lines.append(
        "  COCO  AP {} | AP50 {} | AP75 {} | APs {} | APm {} | APl {}".format(
            *(_fmt(metrics[k], 0) for k in ("AP", "AP50", "AP75", "APs", "APm", "APl"))
        )
    )
    lines.append(
        "  COCO  AR1 {} | AR10 {} | AR100 {} | ARs {} | ARm {} | ARl {}".format(
            *(_fmt(metrics.get(k, float("nan")), 0) for k in ("AR1", "AR10", "AR100", "ARs", "ARm", "ARl"))
        )
    )
    lines.append(f"  VOC07 mAP@0.5 (11-point)      = {_fmt(metrics['VOC07_mAP50'], 0)}")
    lines.append(f"  VOC   mAP@0.5 (area, 2010+)   = {_fmt(metrics['VOC_mAP50'], 0)}")
    per_voc = metrics.get("per_class_VOC", {})
    per_ap = metrics.get("per_class_AP", {})
    names = list(metrics.get("per_class_AP50", {}).keys())
    if names:
        w = max(10, max(len(n) for n in names))
        header = f"  {'class':<{w}} {'#gt':>6} {'#det':>7} {'AP50':>7} {'AP':>7} {'VOC07':>7} {'VOC':>7}"
        lines.append(header)
        lines.append("  " + "-" * (len(header) - 2))
        for n in names:
            v = per_voc.get(n, {})
            lines.append(
                f"  {n:<{w}} {_fmt(v.get('num_gt'), 6)} {_fmt(v.get('num_det'), 7)} "
                f"{_fmt(metrics['per_class_AP50'][n])} {_fmt(per_ap.get(n))} {_fmt(v.get('AP50_07'))} {_fmt(v.get('AP50'))}"
            )
        lines.append("  (AP50/AP: COCOeval, maxDets=100; VOC07/VOC: VOC rules, all detections; nan = no ground truth)")
    return "\n".join(lines)


def format_localization_report(metrics: dict) -> str:
    keys = ["loc_err_gt", "loc_err_top1", "loc_err_top5", "cls_err_top1", "cls_err_top5"]
    lines = [f"Localization evaluation: {metrics.get('num_images')} images (errors in %, lower is better)"]
    for k in keys:
        lines.append(f"  {k:<13} = {_fmt(metrics.get(k), 0)}")
    return "\n".join(lines)


def plot_per_class_ap(metrics: dict, path: str) -> None:
    """Horizontal bars of per-class AP50 (COCOeval) and VOC AP (area rule)."""
    names = list(metrics["per_class_AP50"].keys())
    coco = np.array([np.nan if v is None else v for v in metrics["per_class_AP50"].values()], dtype=float)
    voc = np.array(
        [metrics.get("per_class_VOC", {}).get(n, {}).get("AP50", np.nan) for n in names], dtype=float
    )
    y = np.arange(len(names))
    fig = new_figure((8, max(2.5, 0.28 * len(names) + 1.2)))
    ax = fig.subplots()
    ax.barh(y - 0.2, np.nan_to_num(coco), height=0.4, label="AP50 (COCOeval)")
    ax.barh(y + 0.2, np.nan_to_num(voc), height=0.4, label="AP50 (VOC area rule)")
    ax.set_yticks(y)
    ax.set_yticklabels(names, fontsize=7 if len(names) > 30 else 9)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("AP50 (%)")
    ax.set_title(f"Per-class AP50 - mAP@0.5 = {metrics['AP50']:.2f}")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    save_figure(fig, path)


def plot_pr_curves(curves: list[dict], path: str, max_legend: int = 20) -> None:
    """VOC precision/recall curves (one line per class with ground truth).

    ``curves``: ``[{"name", "recall", "precision", "ap"}]``.
    """
    fig = new_figure((7, 6))
    ax = fig.subplots()
    shown = 0
    for c in curves:
        if c["recall"] is None or len(c["recall"]) == 0 or np.all(np.isnan(c["recall"])):
            continue
        label = f"{c['name']} ({c['ap'] * 100:.1f})" if len(curves) <= max_legend else None
        ax.plot(c["recall"], c["precision"], lw=1, label=label)
        shown += 1
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Precision-recall at IoU 0.5 (VOC matching)")
    ax.grid(alpha=0.3)
    if shown and len(curves) <= max_legend:
        ax.legend(fontsize=7, loc="lower left")
    save_figure(fig, path)
