"""Ultralytics (YOLO) layout <-> records.

A dataset is named by its ``data.yaml`` and a split key of it: ``yolo:/path/data.yaml:train``.
The layout is read unchanged, with Ultralytics' rules:

* ``data.yaml``: ``names`` (a list, or a dict {0: name, 1: name, ...}); optional ``nc`` (must
  equal the number of names); ``path``, the dataset root (absolute; relative to the current
  directory if that exists, else to the yaml's folder; the yaml's folder when absent); ``train``,
  ``val``, ``test``: a folder of images (searched recursively), a .txt file listing images (one per
  line, ``./`` = the txt's folder, other relative lines relative to ``path``), or a list of those,
  each relative to ``path``.
* labels: the image path with the last ``/images/`` replaced by ``/labels/`` and the extension by
  ``.txt``; one object per line, ``class cx cy w h`` normalised to 0..1 by the image's width and
  height (a polygon ``class x1 y1 ... xk yk`` also works and becomes its bounding box).
* an image without a label file, or with an empty one, is a background image (counted in the log).
  Exact duplicate lines are dropped (counted), as Ultralytics does. Any other bad line (wrong field
  count, a non-number, a value outside 0..1, a class not in ``names``) is a ``DatasetFormatError``
  naming the file and the line.

Image sizes are read from the image headers (PIL, EXIF orientation applied). Category ids are the
class index + 1 (COCO style); image ids come from the file names (see ``voc.numeric_ids``).
"""
from __future__ import annotations

import glob
import logging
import os
import shutil

import numpy as np
import yaml

from detection.utils.io import read_text, write_text

from .image_io import IMAGE_EXTS
from .info import DatasetFormatError, DatasetInfo, DatasetNotFoundError
from .records import BoxCleaner, make_record
from .validation import read_lines
from .voc import image_size_from_file, numeric_ids

__all__ = ["IMAGE_EXTS", "load_yolo", "yolo_info", "read_label_file", "label_path", "write_yolo"]

logger = logging.getLogger(__name__)

_TOLERANCE = 1e-6  # normalised values this far outside 0..1 are taken as rounding and clipped


def _read_yaml(path: str) -> dict:
    if not os.path.isfile(path):
        raise DatasetNotFoundError(f"YOLO data file not found: {path}")
    text = read_text(path, "YOLO data file", DatasetNotFoundError, DatasetFormatError)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise DatasetFormatError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise DatasetFormatError(f"{path}: expected a mapping with 'names' and the split keys")
    return data


def _class_names(data: dict, path: str) -> list[str]:
    names = data.get("names")
    if isinstance(names, dict):
        keys = sorted(names, key=lambda k: (not isinstance(k, int), k))
        if keys != list(range(len(names))):
            raise DatasetFormatError(f"{path}: 'names' as a mapping must have the keys 0..{len(names) - 1}; "
                                     f"got {keys[:10]}")
        names = [names[k] for k in keys]
    if not isinstance(names, list) or not names:
        raise DatasetFormatError(f"{path}: 'names' must be a non-empty list or a mapping {{0: name, ...}}")
    names = [str(n) for n in names]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise DatasetFormatError(f"{path}: class names listed twice in 'names': {dup}")
    if "nc" in data and data["nc"] != len(names):
        raise DatasetFormatError(f"{path}: 'nc' is {data['nc']!r} but 'names' has {len(names)} entries")
    return names


def _root(data: dict, path: str) -> str:
    folder = os.path.dirname(os.path.abspath(path))
    root = data.get("path")
    if not root:
        return folder
    root = os.path.expanduser(str(root))
    if os.path.isabs(root):
        return root
    return os.path.abspath(root) if os.path.exists(root) else os.path.normpath(os.path.join(folder, root))


def _image_files(data: dict, path: str, split: str) -> list[str]:
    if not data.get(split):
        known = [k for k in ("train", "val", "test") if data.get(k)]
        raise DatasetFormatError(f"{path}: no split {split!r}; the file has {known}")
    root = _root(data, path)
    entries = data[split] if isinstance(data[split], list) else [data[split]]
    files = []
    for entry in entries:
        p = os.path.join(root, str(entry))
        if not os.path.exists(p) and str(entry).startswith("../"):
            p = os.path.join(root, str(entry)[3:])  # as Ultralytics
        if os.path.isdir(p):
            files += glob.glob(os.path.join(p, "**", "*.*"), recursive=True)
        elif os.path.isfile(p):
            parent = os.path.dirname(p)
            files += [os.path.join(parent, x[2:]) if x.startswith("./") else os.path.join(root, x)
                      for _, x in read_lines(p, "YOLO image list")]
        else:
            raise DatasetNotFoundError(f"{path}: split {split!r}: {p} is neither a folder nor a list file")
    files = sorted({os.path.abspath(f) for f in files if f.lower().endswith(IMAGE_EXTS)})
    if not files:
        raise DatasetNotFoundError(f"{path}: split {split!r} has no images ({', '.join(map(str, entries))})")
    return files


def label_path(image_path: str) -> str:
    """The label file of an image: last ``/images/`` -> ``/labels/``, extension -> ``.txt``."""
    a, b = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return os.path.splitext(b.join(image_path.rsplit(a, 1)))[0] + ".txt"


def read_label_file(path: str, num_classes: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(labels (N,), boxes (N, 4) normalised cx cy w h, duplicate lines dropped) of one label file."""
    rows = []
    for n, line in read_lines(path, "YOLO label file"):
        fields = line.split()
        where = f"{path}, line {n}"
        if len(fields) != 5 and (len(fields) < 7 or len(fields) % 2 == 0):
            raise DatasetFormatError(f"{where}: expected 5 fields 'class cx cy w h' (or a polygon 'class x1 y1 "
                                     f"... xk yk', k >= 3); got {len(fields)}: {line.strip()[:80]!r}")
        try:
            values = np.array([float(v) for v in fields], dtype=np.float64)
        except ValueError:
            raise DatasetFormatError(f"{where}: not a number in {line.strip()[:80]!r}") from None
        cls = values[0]
        if not (cls == int(cls) if np.isfinite(cls) else False) or not 0 <= cls < num_classes:
            raise DatasetFormatError(f"{where}: class {fields[0]!r} is not one of 0..{num_classes - 1} "
                                     f"(the {num_classes} names of data.yaml)")
        coords = values[1:]
        if not np.isfinite(coords).all() or (coords < -_TOLERANCE).any() or (coords > 1 + _TOLERANCE).any():
            raise DatasetFormatError(f"{where}: coordinates must be normalised to 0..1 (divided by the image "
                                     f"width / height); got {' '.join(fields[1:])[:80]}")
        coords = coords.clip(0, 1)
        if len(fields) > 5:  # polygon -> bounding box
            xs, ys = coords[0::2], coords[1::2]
            coords = np.array([(xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2,
                               xs.max() - xs.min(), ys.max() - ys.min()])
        rows.append([cls, *coords])
    table = np.array(rows, dtype=np.float64).reshape(-1, 5)
    _, first = np.unique(table, axis=0, return_index=True)
    keep = np.sort(first)
    return table[keep, 0].astype(np.int64), table[keep, 1:], len(table) - len(keep)


def yolo_info(yaml_path: str, split: str, dataset_name: str) -> DatasetInfo:
    """DatasetInfo from data.yaml alone (no label or image is read)."""
    yaml_path = os.path.abspath(yaml_path)
    data = _read_yaml(yaml_path)
    names = _class_names(data, yaml_path)
    return DatasetInfo(dataset_name, names, list(range(1, len(names) + 1)), "coco", json_file=None,
                       image_root=_root(data, yaml_path), extra={"yolo_yaml": yaml_path, "split": split})


def load_yolo(yaml_path: str, split: str, dataset_name: str) -> tuple[list[dict], DatasetInfo]:
    """Records and info of one split of an Ultralytics-layout dataset (see the module docstring)."""
    info = yolo_info(yaml_path, split, dataset_name)
    files = _image_files(_read_yaml(info.extra["yolo_yaml"]), info.extra["yolo_yaml"], split)
    ids = numeric_ids([os.path.splitext(os.path.basename(f))[0] for f in files])
    cleaner, no_label, duplicates, records = BoxCleaner(), 0, 0, []
    for file_name, image_id in zip(files, ids):
        height, width = image_size_from_file(file_name)
        lpath = label_path(file_name)
        if os.path.isfile(lpath):
            labels, cxcywh, dup = read_label_file(lpath, info.num_classes)
            duplicates += dup
        else:
            labels, cxcywh = np.zeros(0, np.int64), np.zeros((0, 4))
            no_label += 1
        half = cxcywh[:, 2:] / 2
        boxes = np.concatenate([cxcywh[:, :2] - half, cxcywh[:, :2] + half], axis=1) * [width, height, width, height]
        boxes, keep = cleaner.clean(boxes, height, width)
        records.append(make_record(file_name, image_id, height, width, boxes[keep], labels[keep],
                                   np.zeros(int(keep.sum()), bool)))
    source = f"{dataset_name} ({info.extra['yolo_yaml']}, {split})"
    cleaner.log(source)
    if no_label:
        logger.info("%s: %d of %d images have no label file: background images", source, no_label, len(files))
    if duplicates:
        logger.warning("%s: dropped %d duplicate label lines", source, duplicates)
    return records, info


def write_yolo(records: list[dict], info: DatasetInfo, out_dir: str, split: str, copy_images: bool = False) -> str:
    """Write ``records`` as split ``split`` of an Ultralytics-layout dataset in ``out_dir``; returns data.yaml.

    Images go to ``images/<split>/`` (symbolic links, or copies with ``copy_images``) keeping their
    path relative to the images' common folder; labels to ``labels/<split>/``. data.yaml gets
    ``names`` and the split (other splits already in it are kept; their names must agree). Ignore
    (crowd / difficult) boxes have no YOLO equivalent: they are left out and counted in the log.
    """
    out_dir = os.path.abspath(out_dir)
    yaml_path = os.path.join(out_dir, "data.yaml")
    data = _read_yaml(yaml_path) if os.path.isfile(yaml_path) else {}
    if data and _class_names(data, yaml_path) != list(info.class_names):
        raise DatasetFormatError(f"{yaml_path} already has other class names than {info.name}'s")
    common = os.path.commonpath([os.path.dirname(r["file_name"]) for r in records]) if records else ""
    target = os.path.join(out_dir, "images", split)
    if records and os.path.commonpath([common, target]) in (common, target):
        raise ValueError(f"{info.name}: the images are under {common}; writing {target} would overwrite or "
                         "mix with them: choose another output folder")
    dropped = 0
    for r in records:
        rel = os.path.relpath(r["file_name"], common)
        image = os.path.join(out_dir, "images", split, rel)
        os.makedirs(os.path.dirname(image), exist_ok=True)
        if os.path.lexists(image):
            os.remove(image)
        (shutil.copyfile if copy_images else os.symlink)(r["file_name"], image)
        keep = ~r["ignore"]
        dropped += int((~keep).sum())
        b = r["boxes"][keep].astype(np.float64)
        wh = np.array([r["width"], r["height"]], dtype=np.float64)
        cxcywh = np.concatenate([(b[:, :2] + b[:, 2:]) / 2 / wh, (b[:, 2:] - b[:, :2]) / wh], axis=1)
        lines = [f"{c} " + " ".join(f"{v:.8g}" for v in row) for c, row in zip(r["labels"][keep].tolist(), cxcywh)]
        write_text(label_path(image), "".join(line + "\n" for line in lines))
    if dropped:
        logger.warning("%s: %d ignore (crowd/difficult) boxes left out: YOLO labels have no such flag",
                       info.name, dropped)
    data.update({"names": list(info.class_names), split: f"images/{split}"})
    return write_text(yaml_path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
