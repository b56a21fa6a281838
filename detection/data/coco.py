"""COCO-format json <-> records, through pycocotools.

Reading: category ids are mapped to contiguous labels in increasing id order (``DatasetInfo.category_ids``
maps back); ``bbox`` [x, y, w, h] (continuous pixel coords) becomes xyxy; ``iscrowd`` (or a non-zero
``ignore`` field) becomes ``ignore``. Writing: the inverse, with ignore boxes as ``iscrowd=1`` so
pycocotools' evaluator treats them as COCO does.

Checked on load (``validation.check_coco_gt``), each an error naming the file, record and field:
repeated image or category ids (or names, or image file names), ids that are not integers, a
``bbox`` that is not 4 finite numbers or has a negative width/height, ``iscrowd`` other than 0/1.
Counted skips (logged): zero-size and outside boxes, annotations of image ids not in ``images``.
"""
from __future__ import annotations

import logging
import os

import numpy as np

from detection.utils.coco import coco_from_dict
from detection.utils.io import read_json as _read_json
from detection.utils.io import write_json

from .info import DatasetFormatError, DatasetInfo, DatasetNotFoundError
from .records import BoxCleaner, make_record
from .validation import check_categories, check_coco_gt

__all__ = ["load_coco_json", "coco_info", "read_json", "coco_annotation", "save_coco_json", "write_coco_json",
           "gt_json_for"]

logger = logging.getLogger(__name__)


def read_json(path: str):
    """An annotation json; errors name the file (and the line and column of bad syntax)."""
    return _read_json(path, "annotation file", DatasetNotFoundError, DatasetFormatError)


def _coco_api(data: dict, path: str):
    """A pycocotools COCO of ``data``, after ``check_coco_gt`` (ids unique, numbers numbers)."""
    if isinstance(data, dict) and not isinstance(data.get("annotations"), list):
        raise DatasetFormatError(f"{path}: not a COCO detection json: top-level key 'annotations' missing or not a list")
    check_coco_gt(data, path, need_image_size=True)
    return coco_from_dict(data)


def load_coco_json(json_file: str, image_root: str, dataset_name: str,
                   evaluator_type: str = "coco") -> tuple[list[dict], DatasetInfo]:
    """Records and info of a COCO-format detection json. Images without annotations are kept."""
    if not os.path.isdir(image_root):
        raise DatasetNotFoundError(f"{dataset_name}: image folder not found: {image_root}")
    json_file = os.path.abspath(json_file)
    coco = _coco_api(read_json(json_file), json_file)

    cat_ids = sorted(coco.cats)
    id_to_label = {cid: i for i, cid in enumerate(cat_ids)}
    class_names = [str(coco.cats[cid].get("name", cid)) for cid in cat_ids]

    known_images = set(coco.imgs)
    orphans = sum(len(a) for i, a in coco.imgToAnns.items() if i not in known_images)
    if orphans:
        logger.warning("%s: %d annotations refer to image ids not in 'images'; ignored", json_file, orphans)

    cleaner = BoxCleaner()
    records = []
    for img_id in sorted(coco.imgs):
        img = coco.imgs[img_id]
        height, width, fname = int(img["height"]), int(img["width"]), img["file_name"]
        boxes, labels, ignore = [], [], []
        for ann in coco.imgToAnns.get(img_id, []):
            x, y, w, h = (float(v) for v in ann["bbox"])
            boxes.append([x, y, x + w, y + h])
            labels.append(id_to_label[ann["category_id"]])
            ignore.append(bool(ann.get("iscrowd", 0)) or bool(ann.get("ignore", 0)))
        boxes, keep = cleaner.clean(np.array(boxes, dtype=np.float64).reshape(-1, 4), height, width)
        labels, ignore = np.array(labels, dtype=np.int64), np.array(ignore, dtype=np.bool_)
        records.append(make_record(os.path.abspath(os.path.join(image_root, fname)), img_id, height, width,
                                   boxes[keep], labels[keep], ignore[keep]))
    cleaner.log(f"{dataset_name} ({json_file})")
    info = DatasetInfo(dataset_name, class_names, list(cat_ids), evaluator_type,
                       json_file=json_file, image_root=os.path.abspath(image_root))
    return records, info


def coco_info(json_file: str, image_root: str, dataset_name: str, evaluator_type: str = "coco") -> DatasetInfo:
    """DatasetInfo from the json's categories only (still parses the whole file, but builds no records)."""
    json_file = os.path.abspath(json_file)
    data = read_json(json_file)
    cats = data.get("categories") if isinstance(data, dict) else None
    if not isinstance(cats, list):
        raise DatasetFormatError(f"{json_file}: not a COCO detection json: no 'categories' list")
    check_categories(cats, json_file)
    cats = sorted(cats, key=lambda c: c["id"])
    return DatasetInfo(dataset_name, [str(c.get("name", c["id"])) for c in cats], [c["id"] for c in cats],
                       evaluator_type, json_file=json_file, image_root=os.path.abspath(image_root))


def coco_annotation(ann_id: int, image_id: int, category_id: int, box: list[float], iscrowd: bool = False,
                    area: float | None = None) -> dict:
    """One COCO annotation for the xyxy ``box``: ``bbox`` [x, y, w, h]; ``area`` defaults to the box
    area (there are no masks). ``ann_id`` should start at 1: pycocotools treats id 0 as falsy."""
    x1, y1, x2, y2 = box
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": [x1, y1, x2 - x1, y2 - y1],
            "area": (x2 - x1) * (y2 - y1) if area is None else area, "iscrowd": int(iscrowd)}


def save_coco_json(path: str, images: list[dict], annotations: list[dict], categories: list[dict],
                   info: dict) -> str:
    """A COCO detection json (``info``, ``images``, ``annotations``, ``categories``) at ``path``,
    written atomically. Returns ``path``."""
    return write_json(path, {"info": info, "images": images, "annotations": annotations, "categories": categories})


def write_coco_json(records: list[dict], info: DatasetInfo, path: str, image_root: str | None = None) -> str:
    """Write the ground truth of ``records`` as a COCO detection json at ``path`` (returns ``path``).

    file_name is the record's absolute path, or its path relative to ``image_root``; category ids are
    ``info.category_ids``; ignore boxes get iscrowd=1; area is the box area (there are no masks). Written atomically (temp file + rename).
    """
    images, annotations = [], []
    for r in records:
        name = os.path.relpath(r["file_name"], image_root) if image_root else r["file_name"]
        images.append({"id": int(r["image_id"]), "file_name": name,
                       "height": int(r["height"]), "width": int(r["width"])})
        for box, label, ign in zip(r["boxes"].tolist(), r["labels"].tolist(), r["ignore"].tolist()):
            annotations.append(coco_annotation(len(annotations) + 1, int(r["image_id"]),
                                               int(info.category_ids[label]), box, iscrowd=ign))
    categories = [{"id": int(cid), "name": name} for cid, name in zip(info.category_ids, info.class_names)]
    return save_coco_json(path, images, annotations, categories, {"description": f"ground truth of {info.name}"})


def gt_json_for(info: DatasetInfo, records: list[dict], out_dir: str) -> str:
    """Path of a COCO-format ground-truth json of a dataset, for pycocotools.

    ``info.json_file`` if set; otherwise the ground truth of ``records`` (ignore boxes as iscrowd=1) is
    written to ``out_dir/<name>_gt_coco.json`` and that path returned.
    """
    if info.json_file:
        return info.json_file
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in info.name)
    return write_coco_json(records, info, os.path.join(out_dir, f"{safe}_gt_coco.json"))
