"""PASCAL VOC (VOCdevkit layout) -> records.

Layout of one year's folder (``VOC2007``)::

    JPEGImages/<id>.jpg   Annotations/<id>.xml   ImageSets/Main/<split>.txt  (one <id> per line)

VOC boxes are 1-based inclusive pixel indices; in our continuous convention a box covering pixels
xmin..xmax (1-based) is ``x1 = xmin - 1, x2 = xmax`` (same for y), as Detectron2 does.
``difficult`` objects become ``ignore``. Classes are the 20 VOC classes unless the folder has a
``classes.txt`` (one name per line), which allows VOC-style custom datasets.
"""
from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET

import numpy as np
from PIL import Image

from .info import DatasetFormatError, DatasetInfo, DatasetNotFoundError
from .records import BoxCleaner, make_record
from .validation import check_unique, read_lines

__all__ = ["VOC_CLASSES", "load_voc", "voc_info", "parse_voc_xml"]

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


def parse_voc_xml(path: str) -> dict:
    """Parse a PASCAL-style annotation xml (VOC and ImageNet share it).

    Returns ``{"width": int|None, "height": int|None, "objects": [{"name": str, "difficult": bool,
    "bndbox": [xmin, ymin, xmax, ymax] as written in the file}]}``. Malformed xml raises
    ``DatasetFormatError`` with the file, line and column; a missing field names the object.
    """
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise DatasetNotFoundError(f"annotation file not found: {path}") from None
    except ET.ParseError as e:
        line, col = e.position
        raise DatasetFormatError(f"{path}: line {line}, column {col}: malformed xml: {e}") from None

    def number(node, tag, where):
        text = node.findtext(tag)
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise DatasetFormatError(f"{path}: {where}: missing or non-numeric <{tag}> ({text!r})") from None
        if not np.isfinite(value):
            raise DatasetFormatError(f"{path}: {where}: non-finite <{tag}> ({text!r})")
        return value

    size = root.find("size")
    width = height = None
    if size is not None and size.findtext("width") and size.findtext("height"):
        width, height = number(size, "width", "<size>"), number(size, "height", "<size>")
        if width < 0 or height < 0 or width != int(width) or height != int(height):
            raise DatasetFormatError(f"{path}: <size>: width and height must be integers >= 0 "
                                     f"(0: read from the image), got {width!r} x {height!r}")
        width, height = int(width), int(height)
    objects = []
    for k, obj in enumerate(root.iter("object")):
        name = (obj.findtext("name") or "").strip()
        where = f"object #{k + 1} ({name or 'no name'})"
        if not name:
            raise DatasetFormatError(f"{path}: {where}: missing <name>")
        box = obj.find("bndbox")
        if box is None:
            raise DatasetFormatError(f"{path}: {where}: missing <bndbox>")
        coords = [number(box, t, where) for t in ("xmin", "ymin", "xmax", "ymax")]
        if coords[2] < coords[0] or coords[3] < coords[1]:
            raise DatasetFormatError(f"{path}: {where}: <bndbox> has xmax < xmin or ymax < ymin: {coords}")
        difficult = (obj.findtext("difficult") or "0").strip()
        if difficult not in ("0", "1"):
            raise DatasetFormatError(f"{path}: {where}: <difficult> must be 0 or 1, got {difficult!r}")
        objects.append({"name": name, "difficult": difficult == "1", "bndbox": coords})
    return {"width": width, "height": height, "objects": objects}


def image_size_from_file(path: str) -> tuple[int, int]:
    """(height, width) read from the image header, for annotation files without a usable <size>."""
    try:  # the header only: much cheaper than decoding
        with Image.open(path) as im:
            width, height = im.size
            if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF 90/270-degree turn: OpenCV returns it turned
                width, height = height, width
            return height, width
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DatasetFormatError(f"cannot read the size of image {path}: {e}") from None


def numeric_ids(names: list[str]) -> list[int]:
    """Integer image ids from VOC/ImageNet-style names: the digits ("000005" -> 5,
    "2008_000002" -> 2008000002) when every name is digits/underscores and the result is unique,
    else the position in the list."""
    if all(re.fullmatch(r"[0-9_]+", n) and re.search(r"[0-9]", n) for n in names):
        ids = [int(n.replace("_", "")) for n in names]
        if len(set(ids)) == len(ids):
            return ids
    return list(range(len(names)))


def load_voc(voc_dir: str, split: str, dataset_name: str,
             class_names: tuple[str, ...] | None = None) -> tuple[list[dict], DatasetInfo]:
    """Records and info of one VOC-style folder and split (e.g. ``.../VOC2007``, ``"trainval"``)."""
    split_file = os.path.join(voc_dir, "ImageSets", "Main", f"{split}.txt")
    if not os.path.isfile(split_file):
        raise DatasetNotFoundError(f"{dataset_name}: split file not found: {split_file}")
    info = voc_info(voc_dir, dataset_name, class_names)
    class_names = info.class_names
    class_to_label = {n: i for i, n in enumerate(class_names)}
    names = [line.split()[0] for _, line in read_lines(split_file, "split file")]
    check_unique(names, "image names", f"split file {split_file}")
    ids = numeric_ids(names)

    cleaner = BoxCleaner()
    records = []
    for name, image_id in zip(names, ids):
        xml_path = os.path.join(voc_dir, "Annotations", f"{name}.xml")
        file_name = os.path.abspath(os.path.join(voc_dir, "JPEGImages", f"{name}.jpg"))
        ann = parse_voc_xml(xml_path)
        height, width = ann["height"], ann["width"]
        if not height or not width:
            height, width = image_size_from_file(file_name)
        boxes, labels, ignore = [], [], []
        for k, obj in enumerate(ann["objects"]):
            if obj["name"] not in class_to_label:
                raise DatasetFormatError(
                    f"{xml_path}: object #{k + 1} has unknown class name {obj['name']!r}; known: {list(class_names)}")
            xmin, ymin, xmax, ymax = obj["bndbox"]
            boxes.append([xmin - 1.0, ymin - 1.0, xmax, ymax])  # 1-based inclusive -> continuous
            labels.append(class_to_label[obj["name"]])
            ignore.append(obj["difficult"])
        boxes, keep = cleaner.clean(np.array(boxes, dtype=np.float64).reshape(-1, 4), height, width)
        records.append(make_record(file_name, image_id, height, width, boxes[keep],
                                   np.array(labels, dtype=np.int64)[keep], np.array(ignore, dtype=np.bool_)[keep]))
    cleaner.log(f"{dataset_name} ({voc_dir}, {split})")
    return records, info


def voc_info(voc_dir: str, dataset_name: str, class_names: tuple[str, ...] | None = None) -> DatasetInfo:
    """DatasetInfo of a VOC-style folder without reading annotations: the 20 VOC classes, or the
    folder's ``classes.txt`` (one name per line) if it has one; category ids 1..K."""
    source = "the given class names"
    if class_names is None:
        classes_txt = os.path.join(voc_dir, "classes.txt")
        if os.path.isfile(classes_txt):
            class_names = tuple(line for _, line in read_lines(classes_txt, "class list"))
            source = classes_txt
        else:
            class_names = VOC_CLASSES
    check_unique(class_names, "class names", source)
    return DatasetInfo(dataset_name, list(class_names), list(range(1, len(class_names) + 1)), "voc",
                       json_file=None, image_root=os.path.abspath(os.path.join(voc_dir, "JPEGImages")))
