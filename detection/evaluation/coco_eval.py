"""COCO-style box AP through pycocotools' ``COCOeval`` (never re-implemented here).

Helpers:

* :func:`load_coco_gt` - a ``pycocotools.coco.COCO`` from a path or a dict, with the fields
  COCOeval needs filled in (``area``, ``iscrowd``, annotation ids >= 1).
* :func:`outputs_to_coco_results` - model outputs -> COCO results (xywh, original ids).
* :func:`validate_results` - clear errors for invalid entries (or skip them) and unknown ids.
* :func:`run_coco_eval` - COCOeval on a results list (an empty list is fine).
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import math
import os
from collections.abc import Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detection.data.validation import bbox_problem, check_coco_gt, describe, is_integer, is_number, type_name
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

logger = logging.getLogger(__name__)


def _normalise_gt(dataset: dict, source: str) -> dict:
    """Check the ground truth (``check_coco_gt``) and fill what COCOeval needs. Returns a
    (shallow-copied) dict."""
    check_coco_gt(dataset, f"ground truth {source}", need_image_size=False)
    ds = dict(dataset)
    ds.setdefault("info", {})
    anns = dataset.get("annotations", [])
    img_ids = {img["id"] for img in ds["images"]}
    ids = [a.get("id") for a in anns]
    # COCOeval stores matched gt *ids* and treats 0 as "unmatched": an annotation with id 0
    # would silently never be matched. Renumber when ids are missing, 0/negative or repeated.
    renumber = any(not isinstance(i, int) or i <= 0 for i in ids) or len(set(ids)) != len(ids)
    new_anns = []
    for k, a in enumerate(anns):
        if a["image_id"] not in img_ids:
            raise ValueError(f"ground truth {source}: annotation #{k} has unknown image_id {a['image_id']!r}")
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


def result_problem(result) -> str | None:
    """What is wrong with one COCO result dict (None if nothing): its keys, id types, bbox (4 finite
    numbers, w, h >= 0) and score (a finite number)."""
    if not isinstance(result, dict):
        return f"is not an object: {result!r}"
    for key in ("image_id", "category_id", "bbox", "score"):
        if key not in result:
            return f"has no '{key}'"
    for key in ("image_id", "category_id"):
        if not is_integer(result[key]):
            return f"'{key}' must be an integer, got {result[key]!r} ({type_name(result[key])})"
    problem = bbox_problem(result["bbox"])
    if problem:
        return problem
    score = result["score"]
    if not (is_number(score) and math.isfinite(score)):
        return f"'score' must be a finite number, got {score!r}"
    return None


def validate_results(results, coco_gt: COCO, source: str = "detections", skip_invalid: bool = False) -> list[dict]:
    """The valid entries of a COCO results list; raises ``ValueError`` naming what is wrong.

    An invalid entry (see :func:`result_problem`) is an error naming its index, image id and
    field; with ``skip_invalid`` it is left out instead, and the count and the first few are
    logged (the metrics are then those of the valid entries). Image or category ids that are not
    in the ground truth are always an error (usually the wrong ground-truth file).
    """
    if not isinstance(results, list):
        raise ValueError(f"{source}: expected a json list of detections, got {type_name(results)}")
    valid, skipped = [], []
    for k, r in enumerate(results):
        problem = result_problem(r)
        if problem is None:
            valid.append(r)
            continue
        where = f"entry #{k}" + (f" (image_id {r['image_id']!r})" if isinstance(r, dict) and "image_id" in r else "")
        if not skip_invalid:
            raise ValueError(f"{source}: {where}: {problem}")
        skipped.append(f"{where}: {problem}")
    if skipped:
        logger.warning("%s: skipped %d of %d detections that are not valid (skip_invalid): %s", source,
                       len(skipped), len(results), "; ".join(skipped[:5]) + ("; ..." if len(skipped) > 5 else ""))
    bad_imgs = {r["image_id"] for r in valid} - set(coco_gt.getImgIds())
    bad_cats = {r["category_id"] for r in valid} - set(coco_gt.getCatIds())
    msgs = []
    if bad_imgs:
        msgs.append(f"image ids not in the ground truth: {describe(sorted(bad_imgs))}")
    if bad_cats:
        msgs.append(f"category ids not in the ground truth: {describe(sorted(bad_cats))}")
    if msgs:
        raise ValueError(f"{source}: " + "; ".join(msgs))
    return valid


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
