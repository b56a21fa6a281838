"""Ground truth and detections drawn by outcome, worst images first, and a contact sheet.

Drawn: the detections with ``score >= `` their class's threshold, coloured by outcome
(``error_types``: true positive green, classification red "cls", localization orange "loc",
both purple "both", duplicate brown "dup", background grey "bkg"; detections on crowd boxes
are not drawn); the ground truth
thin green when a drawn true positive found it, thick blue ("missed") otherwise, crowd boxes
thin grey. An image's error count is its drawn false positives plus its missed
boxes; "worst first" sorts by that count (then by image id).
"""

from __future__ import annotations

import logging
import os

import cv2
import numpy as np

from detection.data.image_io import ImageReadError, read_image
from detection.utils.visualize import contact_sheet, draw_boxes

from .error_types import BKG, BOTH, CLS, DUP, IGNORED, LOC, TP
from .voc_eval import DetArrays, GtArrays

__all__ = ["OUTCOME_COLORS", "rank_images", "draw_outcomes", "write_worst_images"]

logger = logging.getLogger(__name__)

#: BGR colour of each outcome code, and of found / missed / crowd ground truth.
OUTCOME_COLORS = {TP: (0, 170, 0), CLS: (0, 0, 220), LOC: (0, 140, 255), BOTH: (180, 0, 180),
                  DUP: (40, 90, 140), BKG: (110, 110, 110)}
FOUND, MISSED, CROWD = (150, 230, 150), (255, 110, 0), (190, 190, 190)
#: Caption prefix of each false-positive type.
SHORT = {CLS: "cls", LOC: "loc", BOTH: "both", DUP: "dup", BKG: "bkg"}


def _drawn(gt: GtArrays, dt: DetArrays, outcome, target, thresholds):
    """(drawn detections (D,) bool, found boxes (G,) bool) at the per-class ``thresholds``."""
    drawn = (dt.scores >= np.asarray(thresholds)[dt.labels]) & (outcome != IGNORED)
    found = np.zeros(len(gt.labels), dtype=bool)
    found[target[drawn & (outcome == TP)]] = True
    return drawn, found


def rank_images(gt: GtArrays, dt: DetArrays, outcome, target, thresholds, image_ids) -> list[dict]:
    """``[{"image_id", "errors", "false_positives", "missed"}]`` for ``image_ids``, worst first."""
    drawn, found = _drawn(gt, dt, outcome, target, thresholds)
    ids = np.asarray(sorted(int(i) for i in image_ids), dtype=np.int64)
    fp_img = dt.image[drawn & (outcome != TP)]
    miss_img = gt.image[~found & ~gt.difficult]
    fp = np.bincount(np.searchsorted(ids, fp_img), minlength=len(ids))[:len(ids)]
    miss = np.bincount(np.searchsorted(ids, miss_img), minlength=len(ids))[:len(ids)]
    order = np.lexsort((ids, -(fp + miss)))
    return [{"image_id": int(ids[k]), "errors": int(fp[k] + miss[k]), "false_positives": int(fp[k]),
             "missed": int(miss[k])} for k in order]


def draw_outcomes(image_bgr: np.ndarray, image_id: int, gt: GtArrays, dt: DetArrays, outcome, target,
                  thresholds, class_names: list[str]) -> np.ndarray:
    """One image with its ground truth and drawn detections (module docstring)."""
    drawn, found = _drawn(gt, dt, outcome, target, thresholds)
    g = np.nonzero(gt.image == image_id)[0]
    d = np.nonzero((dt.image == image_id) & drawn)[0]
    d = d[np.argsort(dt.scores[d], kind="stable")]  # the best drawn last, on top
    boxes = list(gt.boxes[g]) + list(dt.boxes[d])
    captions, colors, thick = [], [], []
    for j in g:
        if gt.difficult[j]:
            captions.append(""), colors.append(CROWD), thick.append(1)
        elif found[j]:
            captions.append(""), colors.append(FOUND), thick.append(1)
        else:
            captions.append(f"missed {class_names[gt.labels[j]]}"), colors.append(MISSED), thick.append(2)
    for i in d:
        kind = SHORT.get(int(outcome[i]), "")
        captions.append(f"{kind + ' ' if kind else ''}{class_names[dt.labels[i]]} {dt.scores[i]:.2f}")
        colors.append(OUTCOME_COLORS[int(outcome[i])])
        thick.append(2)
    return draw_boxes(image_bgr, boxes, captions, colors, thick)


def write_worst_images(output_dir: str, ranking: list[dict], image_paths: dict, gt: GtArrays, dt: DetArrays,
                       outcome, target, thresholds, class_names: list[str], num: int = 16,
                       sheet: int = 16) -> list[dict]:
    """Draw the ``num`` worst images of ``ranking`` into ``output_dir`` (``<rank>_<id>.jpg``)
    and the first ``sheet`` of them into ``contact_sheet.jpg``. ``image_paths``: image id ->
    file. Images that cannot be read are skipped with a warning. Returns the drawn entries of
    ``ranking`` with ``"file"`` (relative to ``output_dir``) and ``"source"`` added."""
    os.makedirs(output_dir, exist_ok=True)
    written, sheet_images, sheet_captions, skipped = [], [], [], []
    for entry in ranking:
        if len(written) >= num:
            break
        path = image_paths.get(entry["image_id"])
        try:
            if path is None:
                raise ImageReadError(f"image id {entry['image_id']}: no file known")
            image = read_image(path, "BGR")
        except ImageReadError as e:
            skipped.append(str(e))
            continue
        drawn = draw_outcomes(image, entry["image_id"], gt, dt, outcome, target, thresholds, class_names)
        name = f"{len(written) + 1:03d}_{entry['image_id']}.jpg"
        cv2.imwrite(os.path.join(output_dir, name), drawn, [cv2.IMWRITE_JPEG_QUALITY, 85])
        written.append(dict(entry, file=name, source=os.fspath(path)))
        if len(sheet_images) < sheet:
            sheet_images.append(drawn)
            sheet_captions.append(f"#{len(written)} id {entry['image_id']}: {entry['errors']} errors")
    if skipped:
        logger.warning("worst images: %d image(s) could not be read and were skipped (first: %s); "
                       "for a results file, --image-root says where the images are", len(skipped), skipped[0])
    if sheet_images:
        cv2.imwrite(os.path.join(output_dir, "contact_sheet.jpg"), contact_sheet(sheet_images, sheet_captions),
                    [cv2.IMWRITE_JPEG_QUALITY, 85])
    return written
