"""Checks of the values in user-supplied annotation files, at the door.

Every identifier that must be unique is checked for repeats (image ids, category ids, class names,
list entries); every numeric field for type (a number, not a string, bool or null) and finiteness.
A failure is a ``DatasetFormatError`` (a ``ValueError``) naming the file, the record (its index
and id) and the field, so nothing is merged, dropped or coerced without a word.
"""
from __future__ import annotations

import math
import numbers
from collections import Counter

import numpy as np

from detection.utils.io import read_text

from .info import DatasetFormatError, DatasetNotFoundError

__all__ = ["is_number", "describe", "check_unique", "read_lines", "check_categories", "check_coco_gt",
           "bbox_problem", "is_integer", "type_name"]


def is_number(value) -> bool:
    """A real number that is not a bool (json ``true`` is not a coordinate) and not a string."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def describe(values, limit: int = 10) -> str:
    """``repr``s of the first ``limit`` values, saying how many there are in all."""
    values = list(values)
    text = ", ".join(repr(v) for v in values[:limit])
    return text + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def check_unique(values, what: str, source: str) -> None:
    """Raise naming ``source`` and the repeated values if ``values`` has a repeat."""
    repeated = [v for v, n in Counter(values).items() if n > 1]
    if repeated:
        raise DatasetFormatError(f"{source}: {what} must be unique; repeated: {describe(repeated)}")


def read_lines(path: str, what: str) -> list[tuple[int, str]]:
    """(line number, stripped text) of the non-empty lines of a UTF-8 text file (a BOM is allowed)."""
    text = read_text(path, what, DatasetNotFoundError, DatasetFormatError)
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def is_integer(value) -> bool:
    """An integer that is not a bool (ids are ints; ``"3"`` or ``3.0`` is not an id)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def type_name(value) -> str:
    """The json-ish name of ``value``'s type, for messages."""
    return "null" if value is None else type(value).__name__


def _record(kind: str, k: int, item: dict) -> str:
    rid = f" (id {item['id']!r})" if isinstance(item, dict) and "id" in item else ""
    return f"{kind}[{k}]{rid}"


def check_categories(categories, source: str) -> None:
    """COCO ``categories``: objects with a unique integer ``id`` and (if given) a unique name."""
    if not isinstance(categories, list):
        raise DatasetFormatError(f"{source}: 'categories' must be a list, got {type_name(categories)}")
    for k, c in enumerate(categories):
        if not isinstance(c, dict):
            raise DatasetFormatError(f"{source}: categories[{k}]: must be an object, got {c!r}")
        if "id" not in c:
            raise DatasetFormatError(f"{source}: categories[{k}]: has no 'id'")
        if not is_integer(c["id"]):
            raise DatasetFormatError(f"{source}: {_record('categories', k, c)}: 'id' must be an integer, "
                                     f"got {c['id']!r} ({type_name(c['id'])})")
    check_unique([c["id"] for c in categories], "category ids", source)
    check_unique([str(c.get("name", c["id"])) for c in categories], "category names", source)


def _check_images(images, source: str, need_size: bool) -> None:
    for k, img in enumerate(images):
        if not isinstance(img, dict):
            raise DatasetFormatError(f"{source}: images[{k}]: must be an object, got {img!r}")
        if "id" not in img:
            raise DatasetFormatError(f"{source}: images[{k}]: has no 'id'")
        where = _record("images", k, img)
        if not is_integer(img["id"]):
            raise DatasetFormatError(f"{source}: {where}: 'id' must be an integer, got {img['id']!r} "
                                     f"({type_name(img['id'])})")
        for key in ("height", "width"):
            if key not in img:
                if need_size:
                    raise DatasetFormatError(f"{source}: {where}: has no '{key}'")
                continue
            v = img[key]
            if not (is_number(v) and math.isfinite(v) and v == int(v) and v > 0):
                raise DatasetFormatError(f"{source}: {where}: '{key}' must be a positive integer, got {v!r}")
        if (need_size or "file_name" in img) and not (isinstance(img.get("file_name"), str) and img["file_name"]):
            raise DatasetFormatError(f"{source}: {where}: 'file_name' must be a non-empty string, "
                                     f"got {img.get('file_name')!r}")
    check_unique([img["id"] for img in images], "image ids", source)
    check_unique([img["file_name"] for img in images if "file_name" in img], "image file names", source)


def bbox_problem(bbox) -> str | None:
    """What is wrong with a COCO ``bbox`` [x, y, w, h] (None if nothing): it must be 4 finite
    numbers with w, h >= 0."""
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        return f"'bbox' must be a list [x, y, w, h], got {bbox!r}"
    if not all(is_number(v) for v in bbox):
        return f"'bbox' must hold 4 numbers, got {bbox!r}"
    if not all(math.isfinite(v) for v in bbox):
        return f"'bbox' has a non-finite value: {bbox!r}"
    if bbox[2] < 0 or bbox[3] < 0:
        return f"'bbox' has a negative width or height: {bbox!r}"
    return None


def _annotation_problem(a, category_ids: set) -> str | None:
    """What is wrong with one annotation (None if nothing)."""
    if not isinstance(a, dict):
        return f"must be an object, got {a!r}"
    for key in ("image_id", "category_id", "bbox"):
        if key not in a:
            return f"has no '{key}'"
    for key in ("image_id", "category_id"):
        if not is_integer(a[key]):
            return f"'{key}' must be an integer, got {a[key]!r} ({type_name(a[key])})"
    if a["category_id"] not in category_ids:
        return f"category_id {a['category_id']!r} is not among the categories {describe(sorted(category_ids), 20)}"
    problem = bbox_problem(a["bbox"])
    if problem:
        return problem
    for key in ("iscrowd", "ignore"):  # json "0" would be truthy: a box silently turned into a crowd box
        if key in a and not (type(a[key]) in (int, bool) and a[key] in (0, 1)):
            return f"'{key}' must be 0 or 1, got {a[key]!r}"
    if "area" in a and not (is_number(a["area"]) and math.isfinite(a["area"]) and a["area"] >= 0):
        return f"'area' must be a finite number >= 0, got {a['area']!r}"
    return None


def _plainly_valid(a, category_ids: set) -> bool:
    """The common case of ``_annotation_problem(a) is None`` with plain json types, checked fast
    (COCO train has 860k annotations); False sends the annotation to the full check."""
    try:
        x, y, w, h = a["bbox"]
        crowd = a.get("iscrowd", 0)
        return (type(a["image_id"]) is int and type(a["category_id"]) is int and a["category_id"] in category_ids
                and type(a["bbox"]) is list
                and type(x) in _PLAIN and type(y) in _PLAIN and type(w) in _PLAIN and type(h) in _PLAIN
                and math.isfinite(x + y + w + h) and w >= 0 and h >= 0
                and type(crowd) is int and 0 <= crowd <= 1 and "ignore" not in a
                and ("area" not in a or (type(a["area"]) in _PLAIN and 0 <= a["area"] < math.inf)))
    except (TypeError, KeyError, ValueError, AttributeError):
        return False


_PLAIN = (int, float)


def _check_annotations(anns, source: str, category_ids: set) -> None:
    for k, a in enumerate(anns):
        if _plainly_valid(a, category_ids):
            continue
        problem = _annotation_problem(a, category_ids)
        if problem:
            where = f"annotations[{k}]"
            if isinstance(a, dict) and "image_id" in a:
                where += " (" + (f"id {a['id']!r}, " if "id" in a else "") + f"image_id {a['image_id']!r})"
            elif isinstance(a, dict) and "id" in a:
                where += f" (id {a['id']!r})"
            raise DatasetFormatError(f"{source}: {where}: {problem}")


def check_coco_gt(data, source: str, need_image_size: bool = True) -> None:
    """Check a COCO detection ground truth (the loaded json) before anything indexes it.

    ``images`` and ``categories`` must be lists, ``annotations`` a list if present. Image and
    category ids: unique integers; image file names unique; ``height``/``width`` positive integers
    (required with ``need_image_size``, as training needs them, else checked when present).
    Annotations: integer ``image_id`` and a known integer ``category_id``, ``bbox`` 4 finite numbers
    with w, h >= 0, ``iscrowd``/``ignore`` 0 or 1, ``area`` finite >= 0. Annotation ids are not
    checked (the evaluation renumbers missing or repeated ones; training does not use them).
    """
    if not isinstance(data, dict):
        raise DatasetFormatError(f"{source}: expected a COCO json object with 'images', 'annotations' and "
                                 f"'categories', got a json {type_name(data)}")
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetFormatError(f"{source}: not a COCO detection json: top-level key {key!r} missing or not a list")
    anns = data.get("annotations", [])
    if not isinstance(anns, list):
        raise DatasetFormatError(f"{source}: 'annotations' must be a list, got {type_name(anns)}")
    check_categories(data["categories"], source)
    _check_images(data["images"], source, need_image_size)
    _check_annotations(anns, source, {c["id"] for c in data["categories"]})
