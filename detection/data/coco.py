"""COCO-format json <-> records, through pycocotools.

Reading: category ids are mapped to contiguous labels in increasing id order (``DatasetInfo.category_ids``
maps back); ``bbox`` [x, y, w, h] (continuous pixel coords) becomes xyxy; ``iscrowd`` (or a non-zero
``ignore`` field) becomes ``ignore``. Writing: the inverse, with ignore boxes as ``iscrowd=1`` so
pycocotools' evaluator treats them as COCO does.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os

import numpy as np

from .info import DatasetFormatError, DatasetInfo, DatasetNotFoundError
from .records import BoxCleaner, make_record

__all__ = ["load_coco_json", "coco_info", "read_json", "write_coco_json"]

from detection.utils.io import read_json as _read_json  # noqa: E402

logger = logging.getLogger(__name__)


def read_json(path: str):
    """An annotation json; errors name the file (and the line and column of bad syntax)."""
    return _read_json(path, "annotation file", DatasetNotFoundError, DatasetFormatError)


def _coco_api(data: dict, path: str):
    from pycocotools.coco import COCO

    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetFormatError(f"{path}: not a COCO detection json: top-level key {key!r} missing or not a list")
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # createIndex prints progress lines
        coco.createIndex()
    return coco


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
        try:
            height, width, fname = int(img["height"]), int(img["width"]), img["file_name"]
        except (KeyError, TypeError, ValueError) as e:
            raise DatasetFormatError(f"{json_file}: image id {img_id}: missing or bad field {e}") from None
        anns = coco.imgToAnns.get(img_id, [])
        boxes, labels, ignore = [], [], []
        for ann in anns:
            cid = ann.get("category_id")
            if cid not in id_to_label:
                raise DatasetFormatError(
                    f"{json_file}: annotation id {ann.get('id')} (image id {img_id}) has category_id {cid!r}, "
                    f"which is not among the categories {cat_ids[:20]}{'...' if len(cat_ids) > 20 else ''}")
            bbox = ann.get("bbox")
            if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
                raise DatasetFormatError(f"{json_file}: annotation id {ann.get('id')}: 'bbox' must be [x, y, w, h], got {bbox!r}")
            x, y, w, h = (float(v) if v is not None else float("nan") for v in bbox)
            boxes.append([x, y, x + w, y + h])
            labels.append(id_to_label[cid])
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
    cats = sorted(cats, key=lambda c: c["id"])
    return DatasetInfo(dataset_name, [str(c.get("name", c["id"])) for c in cats], [c["id"] for c in cats],
                       evaluator_type, json_file=json_file, image_root=os.path.abspath(image_root))


def write_coco_json(records: list[dict], info: DatasetInfo, path: str, image_root: str | None = None) -> str:
    """Write the ground truth of ``records`` as a COCO detection json at ``path`` (returns ``path``).

    file_name is the record's absolute path, or its path relative to ``image_root``; category ids are ``info.category_ids``; ignore boxes get
    iscrowd=1; area is the box area (there are no masks). Written atomically (temp file + rename).
    """
    images, annotations = [], []
    for r in records:
        name = os.path.relpath(r["file_name"], image_root) if image_root else r["file_name"]
        images.append({"id": int(r["image_id"]), "file_name": name,
                       "height": int(r["height"]), "width": int(r["width"])})
        for box, label, ign in zip(r["boxes"].tolist(), r["labels"].tolist(), r["ignore"].tolist()):
            x1, y1, x2, y2 = box
            annotations.append({
                "id": len(annotations) + 1,  # COCO ids start at 1; pycocotools treats id 0 as falsy in places
                "image_id": int(r["image_id"]),
                "category_id": int(info.category_ids[label]),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1),
                "iscrowd": int(ign),
            })
    categories = [{"id": int(cid), "name": name} for cid, name in zip(info.category_ids, info.class_names)]
    data = {"info": {"description": f"ground truth of {info.name}"}, "images": images,
            "annotations": annotations, "categories": categories}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f)
    os.replace(tmp, path)
    return path
