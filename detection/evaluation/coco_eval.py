"""COCO-style box AP through pycocotools' ``COCOeval`` (never re-implemented here).

Helpers:

* :func:`load_coco_gt` - a ``pycocotools.coco.COCO`` from a path or a dict, with the fields
  COCOeval needs filled in (``area``, ``iscrowd``, annotation ids >= 1).
* :func:`outputs_to_coco_results` - model outputs -> COCO results (xywh, original ids).
* :func:`validate_results` - clear errors for unknown image / category ids.
* :func:`run_coco_eval` - COCOeval on a results list (an empty list is fine).
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
from collections.abc import Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detection.utils.coco import coco_from_dict
from detection.utils.io import read_json
from detection.utils.tensors import to_numpy

__all__ = [
    "load_coco_gt",
    "outputs_to_coco_results",
    "validate_results",
    "run_coco_eval",
    "COCO_STAT_NAMES",
    "BOX_DECIMALS",
    "SCORE_DECIMALS",
]

#: Names of ``COCOeval.stats`` (bbox), in order.
COCO_STAT_NAMES = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]

#: detections.json rounding: boxes to 1/100 pixel, scores to 5 decimals. Metrics are always
#: computed from the rounded values, so re-evaluating detections.json gives the same numbers.
BOX_DECIMALS = 2
SCORE_DECIMALS = 5


def _normalise_gt(dataset: dict, source: str) -> dict:
    """Fill what COCOeval needs and check the structure. Returns a (shallow-copied) dict."""
    if not isinstance(dataset, dict):
        raise ValueError(f"ground truth {source}: expected a json object, got {type(dataset).__name__}")
    for key in ("images", "categories"):
        if key not in dataset or not isinstance(dataset[key], list):
            raise ValueError(f"ground truth {source}: missing or non-list '{key}'")
    ds = dict(dataset)
    ds.setdefault("info", {})
    anns = dataset.get("annotations", [])
    if not isinstance(anns, list):
        raise ValueError(f"ground truth {source}: 'annotations' is not a list")
    img_ids = {img["id"] for img in ds["images"]}
    cat_ids = {c["id"] for c in ds["categories"]}
    ids = [a.get("id") for a in anns]
    # COCOeval stores matched gt *ids* and treats 0 as "unmatched": an annotation with id 0
    # would silently never be matched. Renumber when ids are missing, 0/negative or repeated.
    renumber = any(not isinstance(i, int) or i <= 0 for i in ids) or len(set(ids)) != len(ids)
    new_anns = []
    for k, a in enumerate(anns):
        if "bbox" not in a or len(a["bbox"]) != 4:
            raise ValueError(f"ground truth {source}: annotation #{k} has no 4-number 'bbox'")
        if a.get("image_id") not in img_ids:
            raise ValueError(f"ground truth {source}: annotation #{k} has unknown image_id {a.get('image_id')!r}")
        if a.get("category_id") not in cat_ids:
            raise ValueError(f"ground truth {source}: annotation #{k} has unknown category_id {a.get('category_id')!r}")
        a = dict(a)
        if renumber:
            a["id"] = k + 1
        a.setdefault("iscrowd", 0)
        if "area" not in a:
            a["area"] = float(a["bbox"][2]) * float(a["bbox"][3])
        new_anns.append(a)
    ds["annotations"] = new_anns
    return ds


def load_coco_gt(json_file: str | os.PathLike | dict | COCO) -> COCO:
    """A pycocotools ``COCO`` for a COCO-format ground truth (path, loaded dict, or COCO)."""
    if isinstance(json_file, COCO):
        return json_file
    if isinstance(json_file, dict):
        dataset, source = json_file, "<dict>"
    else:
        dataset, source = read_json(json_file, "ground-truth json"), os.fspath(json_file)
    return coco_from_dict(_normalise_gt(dataset, source))


def outputs_to_coco_results(image_id: int, output: dict, category_ids: Sequence[int]) -> list[dict]:
    """One image's model output -> COCO result dicts, sorted by score (highest first, stable).

    ``output``: ``{"boxes": (N, 4) xyxy original pixels, "scores": (N,), "labels": (N,)
    contiguous}``; ``category_ids[label]`` is the original category id. Boxes are written
    xywh and rounded to :data:`BOX_DECIMALS`, scores to :data:`SCORE_DECIMALS`.
    """
    boxes = to_numpy(output["boxes"], np.float64).reshape(-1, 4)
    scores = to_numpy(output["scores"], np.float64).reshape(-1)
    labels = to_numpy(output["labels"]).reshape(-1)
    n = boxes.shape[0]
    if scores.shape[0] != n or labels.shape[0] != n:
        raise ValueError(
            f"image {image_id}: boxes/scores/labels lengths differ ({n}, {scores.shape[0]}, {labels.shape[0]})"
        )
    if n == 0:
        return []
    labels = labels.astype(np.int64)
    k = len(category_ids)
    bad = (labels < 0) | (labels >= k)
    if bad.any():
        raise ValueError(f"image {image_id}: labels {sorted(set(labels[bad].tolist()))[:10]} outside 0..{k - 1}")
    cat = np.asarray(category_ids, dtype=np.int64)[labels]
    xywh = np.stack([boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], axis=1)
    xywh = np.round(xywh, BOX_DECIMALS)
    scores = np.round(scores, SCORE_DECIMALS)
    order = np.argsort(-scores, kind="stable")
    image_id = int(image_id)
    return [
        {"image_id": image_id, "category_id": int(cat[i]), "bbox": [float(v) for v in xywh[i]], "score": float(scores[i])}
        for i in order
    ]


def _describe(ids, limit=10):
    ids = sorted(ids, key=lambda v: (str(type(v)), v))
    s = ", ".join(repr(i) for i in ids[:limit])
    return s + (f", ... ({len(ids)} in all)" if len(ids) > limit else "")


def validate_results(results, coco_gt: COCO, source: str = "detections") -> None:
    """Raise ``ValueError`` naming the offending entries/ids of a COCO results list."""
    if not isinstance(results, list):
        raise ValueError(f"{source}: expected a json list of detections, got {type(results).__name__}")
    known_imgs = set(coco_gt.getImgIds())
    known_cats = set(coco_gt.getCatIds())
    bad_imgs, bad_cats = set(), set()
    for k, r in enumerate(results):
        if not isinstance(r, dict):
            raise ValueError(f"{source}: entry #{k} is not an object: {r!r}")
        for key in ("image_id", "category_id", "bbox", "score"):
            if key not in r:
                raise ValueError(f"{source}: entry #{k} has no '{key}': {r!r}")
        bb = r["bbox"]
        if not isinstance(bb, (list, tuple)) or len(bb) != 4 or not all(isinstance(v, (int, float)) for v in bb):
            raise ValueError(f"{source}: entry #{k} has a bbox that is not 4 numbers [x, y, w, h]: {bb!r}")
        if not isinstance(r["score"], (int, float)):
            raise ValueError(f"{source}: entry #{k} has a non-numeric score: {r['score']!r}")
        if r["image_id"] not in known_imgs:
            bad_imgs.add(r["image_id"])
        if r["category_id"] not in known_cats:
            bad_cats.add(r["category_id"])
    msgs = []
    if bad_imgs:
        msgs.append(f"image ids not in the ground truth: {_describe(bad_imgs)}")
    if bad_cats:
        msgs.append(f"category ids not in the ground truth: {_describe(bad_cats)}")
    if msgs:
        raise ValueError(f"{source}: " + "; ".join(msgs))


def _empty_results_coco(coco_gt: COCO) -> COCO:
    # COCO.loadRes indexes anns[0] and so fails on an empty list; an empty results COCO
    # evaluates to precision 0 for every class with ground truth, as COCOeval intends.
    return coco_from_dict({
        "info": copy.deepcopy(coco_gt.dataset.get("info", {})),
        "images": list(coco_gt.dataset["images"]),
        "categories": copy.deepcopy(coco_gt.dataset["categories"]),
        "annotations": [],
    })


def run_coco_eval(
    coco_gt: COCO,
    results: list[dict],
    img_ids: Sequence[int] | None = None,
    cat_ids: Sequence[int] | None = None,
):
    """Run ``COCOeval(iouType="bbox")``. Returns ``(coco_eval, summary_text)``.

    ``results`` is not modified (``loadRes`` writes into its dicts, so copies are passed).
    ``img_ids``/``cat_ids`` restrict ``params.imgIds``/``params.catIds`` (None = all of the
    ground truth). pycocotools' prints are captured into ``summary_text``.
    """
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        if len(results) == 0:
            coco_dt = _empty_results_coco(coco_gt)
        else:
            coco_dt = coco_gt.loadRes([dict(r, bbox=list(r["bbox"])) for r in results])
        coco_eval = COCOeval(coco_gt, coco_dt, iouType="bbox")
        if img_ids is not None:
            coco_eval.params.imgIds = sorted(int(i) for i in img_ids)
        if cat_ids is not None:
            coco_eval.params.catIds = sorted(int(c) for c in cat_ids)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval, buf.getvalue()


def coco_stats_percent(coco_eval: COCOeval) -> dict[str, float]:
    """``stats`` as percentages keyed by :data:`COCO_STAT_NAMES` (-1 -> NaN, as Detectron2)."""
    out = {}
    for name, v in zip(COCO_STAT_NAMES, coco_eval.stats):
        out[name] = float(v * 100) if v >= 0 else float("nan")
    return out


def per_class_ap(coco_eval: COCOeval, iou: float | None = 0.5) -> dict[int, float]:
    """{category id: AP in percent} from ``eval['precision']`` (area all, maxDets 100).

    ``iou=0.5`` gives AP50 (the slice ``precision[iouThrs == .5, :, k, 0, -1]``), ``None``
    the AP over IoU .50:.95. Entries of -1 (no ground truth) are dropped before the mean, as
    in ``summarize``; a class with no entry left is NaN.
    """
    p = coco_eval.params
    prec = coco_eval.eval["precision"]  # [T, R, K, A, M]
    a = p.areaRngLbl.index("all")
    m = list(p.maxDets).index(max(p.maxDets))
    if iou is not None:
        t = np.where(np.isclose(p.iouThrs, iou))[0]
        prec = prec[t]
    out = {}
    for k, cat in enumerate(p.catIds):
        s = prec[:, :, k, a, m]
        s = s[s > -1]
        out[int(cat)] = float(np.mean(s) * 100) if s.size else float("nan")
    return out
