"""ImageNet CLS-LOC (ILSVRC 2012-2017 localization) -> records, for the localization mode.

Expected layout under ``<root>/imagenet`` (the Kaggle "ImageNet Object Localization Challenge"
archive, or the ILSVRC devkit + images arranged the same way)::

    LOC_synset_mapping.txt                      # 1000 lines "n01440764 tench, Tinca tinca";
                                                # line order = contiguous label (may also sit in ILSVRC/)
    ILSVRC/Annotations/CLS-LOC/train/<wnid>/<wnid>_<n>.xml
    ILSVRC/Annotations/CLS-LOC/val/ILSVRC2012_val_<8 digits>.xml
    ILSVRC/Data/CLS-LOC/train/<wnid>/<wnid>_<n>.JPEG
    ILSVRC/Data/CLS-LOC/val/ILSVRC2012_val_<8 digits>.JPEG
    ILSVRC/ImageSets/CLS-LOC/train_loc.txt      # optional: "<wnid>/<wnid>_<n> <k>" per line;
    ILSVRC/ImageSets/CLS-LOC/val.txt            # optional: "ILSVRC2012_val_<n> <k>"; without these
                                                # lists every xml under Annotations is used (sorted)

Only images with a box annotation are loaded (about 544k of the 1.28M training images).
Coordinates: ImageNet xmls hold 0-based inclusive pixel indices, so a box covering xmin..xmax is
``x1 = xmin, x2 = xmax + 1`` in our continuous convention (then clipped to the image).
Objects are named by synset id (wnid); an unknown wnid is an error. image_id: the number in
``ILSVRC2012_val_<n>`` for val, the position in the (sorted) list for train.
"""
from __future__ import annotations

import os

import numpy as np

from .info import DatasetFormatError, DatasetInfo, DatasetNotFoundError
from .records import BoxCleaner, make_record
from .validation import check_unique, read_lines
from .voc import image_size_from_file, numeric_ids, parse_voc_xml

__all__ = ["load_imagenet_loc", "imagenet_loc_info", "read_synset_mapping"]


def read_synset_mapping(path: str) -> tuple[list[str], list[str]]:
    """(wnids, names) from ``LOC_synset_mapping.txt``; a name is the first synonym ("tench")."""
    wnids, names = [], []
    for lineno, line in read_lines(path, "synset mapping"):
        parts = line.split(None, 1)
        if not parts[0].startswith("n"):
            raise DatasetFormatError(f"{path}: line {lineno}: expected '<wnid> <names>', got {line!r}")
        wnids.append(parts[0])
        names.append(parts[1].split(",")[0].strip() if len(parts) > 1 else parts[0])
    check_unique(wnids, "synset ids", path)
    return wnids, names


def _list_split(ilsvrc: str, split: str) -> list[str]:
    """Image names relative to Annotations/CLS-LOC/<split>, without extension."""
    list_file = os.path.join(ilsvrc, "ImageSets", "CLS-LOC", "train_loc.txt" if split == "train" else f"{split}.txt")
    if os.path.isfile(list_file):
        names = [line.split()[0] for _, line in read_lines(list_file, "image list")]
        check_unique(names, "image names", f"image list {list_file}")
        return names
    ann_dir = os.path.join(ilsvrc, "Annotations", "CLS-LOC", split)
    names = []
    for dirpath, _, files in os.walk(ann_dir):
        rel = os.path.relpath(dirpath, ann_dir)
        names += [os.path.normpath(os.path.join(rel, f[:-4])) for f in files if f.endswith(".xml")]
    return sorted(names)


def load_imagenet_loc(imagenet_dir: str, split: str, dataset_name: str) -> tuple[list[dict], DatasetInfo]:
    """Records and info of ImageNet CLS-LOC ``split`` ("train" or "val") under ``imagenet_dir``."""
    info = imagenet_loc_info(imagenet_dir, split, dataset_name)
    mapping, wnids = info.extra["synset_mapping"], info.extra["wnids"]
    ilsvrc = os.path.join(imagenet_dir, "ILSVRC")
    ann_dir = os.path.join(ilsvrc, "Annotations", "CLS-LOC", split)
    wnid_to_label = {w: i for i, w in enumerate(wnids)}

    names = _list_split(ilsvrc, split)
    ids = numeric_ids([os.path.basename(n).rsplit("_", 1)[-1] for n in names]) if split != "train" else list(range(len(names)))
    cleaner = BoxCleaner()
    records = []
    for name, image_id in zip(names, ids):
        xml_path = os.path.join(ann_dir, name + ".xml")
        file_name = os.path.abspath(os.path.join(ilsvrc, "Data", "CLS-LOC", split, name + ".JPEG"))
        ann = parse_voc_xml(xml_path)
        height, width = ann["height"], ann["width"]
        if not height or not width:
            height, width = image_size_from_file(file_name)
        boxes, labels = [], []
        for k, obj in enumerate(ann["objects"]):
            if obj["name"] not in wnid_to_label:
                raise DatasetFormatError(f"{xml_path}: object #{k + 1} has unknown synset id {obj['name']!r} "
                                         f"(not in {mapping})")
            xmin, ymin, xmax, ymax = obj["bndbox"]
            boxes.append([xmin, ymin, xmax + 1.0, ymax + 1.0])  # 0-based inclusive -> continuous
            labels.append(wnid_to_label[obj["name"]])
        boxes, keep = cleaner.clean(np.array(boxes, dtype=np.float64).reshape(-1, 4), height, width)
        records.append(make_record(file_name, image_id, height, width, boxes[keep],
                                   np.array(labels, dtype=np.int64)[keep], np.zeros(int(keep.sum()), dtype=np.bool_)))
    cleaner.log(f"{dataset_name} ({ann_dir})")
    return records, info


def imagenet_loc_info(imagenet_dir: str, split: str, dataset_name: str) -> DatasetInfo:
    """DatasetInfo from the synset mapping alone (``extra`` holds "wnids" and "synset_mapping")."""
    mapping = next((p for p in (os.path.join(imagenet_dir, "LOC_synset_mapping.txt"),
                                os.path.join(imagenet_dir, "ILSVRC", "LOC_synset_mapping.txt")) if os.path.isfile(p)), None)
    ann_dir = os.path.join(imagenet_dir, "ILSVRC", "Annotations", "CLS-LOC", split)
    if mapping is None or not os.path.isdir(ann_dir):
        raise DatasetNotFoundError(
            f"{dataset_name}: expected {os.path.join(imagenet_dir, 'LOC_synset_mapping.txt')} and {ann_dir}")
    wnids, class_names = read_synset_mapping(mapping)
    return DatasetInfo(dataset_name, class_names, list(range(1, len(wnids) + 1)), "loc", json_file=None,
                       image_root=os.path.join(imagenet_dir, "ILSVRC", "Data", "CLS-LOC", split),
                       extra={"wnids": wnids, "synset_mapping": mapping})
