"""Know your data before training: class counts, box sizes in input pixels, and anchor coverage.

Box sizes are measured after the configured *test* resize (INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST,
the size the model sees at evaluation; training sizes differ only by the MIN_SIZE_TRAIN choice).
Ignore (crowd / difficult) boxes are counted per class but left out of sizes and coverage: they are
never RPN targets.

Anchor coverage uses the anchors the RPN actually labels: those of ``AnchorGenerator`` placed on
each image's feature grid (the trunk's declared stride, 16 for C4) (the image padded to MODEL.SIZE_DIVISIBILITY, ANCHOR_GENERATOR.OFFSET
applied), restricted as in training to anchors centred inside the image (and, with
RPN.BOUNDARY_THRESH >= 0, not crossing the border by more than that). For each ground-truth box,
the best IoU over those anchors (torchvision.ops.box_iou) falls into: >= the upper RPN threshold
(it gets positive anchors), between the thresholds (only its best anchor becomes positive, through
ALLOW_LOW_QUALITY_MATCHES), or below the lower one (that best anchor is positive yet a poor fit).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torchvision.ops import box_iou

from detection.data.transforms import resize_shortest_edge_size
from detection.modeling.anchors import AnchorGenerator
from detection.modeling.box_ops import anchors_inside
from detection.modeling.build import build_anchor_generator, build_c4_backbone

__all__ = ["resized_boxes", "best_anchor_iou", "coverage_shares", "suggest_anchors", "dataset_report"]

HIST_BINS = 20
_CHUNK = 1024  # boxes per box_iou call: bounds memory at (chunk x anchors of one image size)


def resized_boxes(records: list[dict], min_size: int, max_size: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(boxes per image (M_i, 4) xyxy in resized pixels, training targets only; (N, 2) resized (h, w))."""
    boxes, sizes = [], []
    for r in records:
        nh, nw = resize_shortest_edge_size(r["height"], r["width"], min_size, max_size)
        scale = torch.tensor([nw / r["width"], nh / r["height"]] * 2, dtype=torch.float32)
        boxes.append(torch.as_tensor(r["boxes"][~r["ignore"]], dtype=torch.float32).reshape(-1, 4) * scale)
        sizes.append((nh, nw))
    return boxes, torch.tensor(sizes, dtype=torch.int64).reshape(-1, 2)


def best_anchor_iou(boxes: list[torch.Tensor], sizes: torch.Tensor, generator: AnchorGenerator,
                    size_divisibility: int, boundary_thresh: float = -1.0) -> torch.Tensor:
    """(M,) the best IoU of each box (images in order, boxes in order) with the usable anchors of its image.

    Images of one size share their anchors, so their boxes go through one box_iou per chunk.
    """
    stride = generator.stride
    best = torch.zeros(sum(len(b) for b in boxes))
    starts = np.cumsum([0] + [len(b) for b in boxes])
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (h, w) in enumerate(sizes.tolist()):
        groups.setdefault((h, w), []).append(i)
    for (h, w), members in groups.items():
        d = size_divisibility
        ph, pw = (math.ceil(h / d) * d, math.ceil(w / d) * d) if d > 0 else (h, w)
        anchors = generator((math.ceil(ph / stride), math.ceil(pw / stride)))
        anchors = anchors[anchors_inside(anchors, torch.tensor([[h, w]]), boundary_thresh)[0]]
        index = torch.cat([torch.arange(starts[i], starts[i + 1]) for i in members])
        gt = torch.cat([boxes[i] for i in members])
        for k in range(0, len(gt), _CHUNK):
            best[index[k:k + _CHUNK]] = box_iou(gt[k:k + _CHUNK], anchors).max(dim=1).values
    return best


def coverage_shares(best: torch.Tensor, thresholds: list[float]) -> dict:
    """Shares (0..1) of boxes whose best anchor IoU is >= hi, in [lo, hi), < lo."""
    lo, hi = thresholds
    n = max(len(best), 1)
    return {"positive": float((best >= hi).sum()) / n, "between": float(((best >= lo) & (best < hi)).sum()) / n,
            "below": float((best < lo).sum()) / n, "median_best_iou": float(best.median()) if len(best) else 0.0}


def suggest_anchors(side: np.ndarray, aspect: np.ndarray, num_sizes: int, num_ratios: int) -> tuple[list, list]:
    """Anchor sizes and ratios at evenly spaced quantiles of sqrt(area) and of h/w (as many of each as
    configured, so a pretrained RPN head still fits): the (i + 0.5) / n quantiles."""
    q_s = (np.arange(num_sizes) + 0.5) / num_sizes
    q_r = (np.arange(num_ratios) + 0.5) / num_ratios
    sizes = sorted({max(1, int(round(v))) for v in np.quantile(side, q_s)})
    ratios = sorted({round(float(np.exp(v)), 2) for v in np.quantile(np.log(aspect), q_r)})
    return sizes, ratios


def _hist(values: np.ndarray, log: bool = False) -> dict:
    if not len(values):
        return {"edges": [], "counts": []}
    v = np.log(values) if log else values
    counts, edges = np.histogram(v, bins=HIST_BINS)
    return {"edges": (np.exp(edges) if log else edges).tolist(), "counts": counts.tolist()}


def dataset_report(records: list[dict], class_names: list[str], cfg, name: str) -> dict:
    """Everything ``tools/analyze.py dataset`` prints, as a JSON-ready dict."""
    m, a, r = cfg.MODEL, cfg.MODEL.ANCHOR_GENERATOR, cfg.MODEL.RPN
    labels = [rec["labels"] for rec in records]
    ignore = [rec["ignore"] for rec in records]
    k = len(class_names)
    all_labels = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    all_ignore = np.concatenate(ignore) if ignore else np.zeros(0, bool)
    image_of = np.repeat(np.arange(len(records)), [len(x) for x in labels])
    present = np.zeros((len(records), k), bool)
    present[image_of[~all_ignore], all_labels[~all_ignore]] = True
    classes = [{"name": n, "images": int(present[:, c].sum()),
                "boxes": int(((all_labels == c) & ~all_ignore).sum()),
                "ignored": int(((all_labels == c) & all_ignore).sum())} for c, n in enumerate(class_names)]

    boxes, sizes = resized_boxes(records, cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)
    flat = torch.cat(boxes).numpy() if boxes else np.zeros((0, 4), np.float32)
    w, h = flat[:, 2] - flat[:, 0], flat[:, 3] - flat[:, 1]
    side, aspect = np.sqrt(w * h), h / np.maximum(w, 1e-6)
    with torch.device("meta"):  # only the declared stride is needed, not weights
        stride = build_c4_backbone(cfg)[0].stride
    generator = build_anchor_generator(cfg, stride)
    best = best_anchor_iou(boxes, sizes, generator, m.SIZE_DIVISIBILITY, r.BOUNDARY_THRESH)
    anchors = {"configured": {"sizes": list(a.SIZES), "ratios": list(a.ASPECT_RATIOS),
                              "coverage": coverage_shares(best, r.IOU_THRESHOLDS)}}
    config_lines = []
    if len(flat):
        s_sizes, s_ratios = suggest_anchors(side, aspect, len(a.SIZES), len(a.ASPECT_RATIOS))
        s_best = best_anchor_iou(boxes, sizes, AnchorGenerator(s_sizes, s_ratios, stride, a.OFFSET),
                                 m.SIZE_DIVISIBILITY, r.BOUNDARY_THRESH)
        anchors["suggested"] = {"sizes": s_sizes, "ratios": s_ratios,
                                "coverage": coverage_shares(s_best, r.IOU_THRESHOLDS)}
        config_lines = [f"MODEL.ANCHOR_GENERATOR.SIZES {s_sizes}", f"MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS {s_ratios}"]
    quantiles = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)
    return {
        "dataset": name, "num_images": len(records), "num_boxes": int((~all_ignore).sum()),
        "num_ignored": int(all_ignore.sum()), "images_without_boxes": int((~present.any(axis=1)).sum()),
        "resize": {"MIN_SIZE_TEST": cfg.INPUT.MIN_SIZE_TEST, "MAX_SIZE_TEST": cfg.INPUT.MAX_SIZE_TEST},
        "classes": classes,
        "quantiles": {"q": list(quantiles), **({key: np.quantile(v, quantiles).tolist() for key, v in
                                                (("width", w), ("height", h), ("sqrt_area", side),
                                                 ("aspect_h_over_w", aspect))} if len(flat) else {})},
        "histograms": {"width": _hist(w), "height": _hist(h), "sqrt_area": _hist(side),
                       "aspect_h_over_w": _hist(aspect, log=True), "best_anchor_iou": _hist(best.numpy())},
        "iou_thresholds": list(r.IOU_THRESHOLDS), "anchors": anchors, "config_lines": config_lines,
    }
