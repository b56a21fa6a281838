#!/usr/bin/env python
"""Convert a dataset between COCO json, YOLO txt (Ultralytics layout) and from VOC xml.

    python tools/convert.py coco:my_data/annotations/train.json:my_data/images --to yolo --split train --output my_yolo
    python tools/convert.py yolo:my_yolo/data.yaml:val --to coco --split val --output my_coco
    python tools/convert.py voc:VOCdevkit/VOC2007:trainval --to coco --split trainval --output voc_coco

SOURCE is any dataset name the config accepts (coco:/voc:/yolo: paths or a built-in name). It is
read by the same loader as training (so the same checks apply; no image is dropped), then written:

* ``--to coco``: OUTPUT/annotations/<split>.json, file_name relative to the images' common folder
  (the images stay where they are); category ids as the source's (YOLO: class index + 1).
* ``--to yolo``: OUTPUT/images/<split>/ (symbolic links to the images, or copies with
  ``--copy-images``), OUTPUT/labels/<split>/*.txt and OUTPUT/data.yaml (names and the split; run it
  once per split). YOLO has no crowd / difficult flag: such boxes are left out and counted.

The last line printed is the dataset name to put in DATASETS.TRAIN / DATASETS.TEST.
"""
from __future__ import annotations

import argparse
import logging
import os

from detection.config import load_config
from detection.data.catalog import get_dataset
from detection.data.coco import write_coco_json
from detection.data.yolo import write_yolo
from detection.engine.launch import HelpFormatter, run_tool

logger = logging.getLogger("detection")


def convert(source: str, to: str, output: str, split: str, copy_images: bool = False, cfg=None) -> str:
    """Convert dataset ``source`` to format ``to`` in folder ``output``; returns the new dataset name."""
    records, info = get_dataset(source, cfg if cfg is not None else load_config(), is_train=False)  # every image
    output = os.path.abspath(output)
    if to == "yolo":
        path = write_yolo(records, info, output, split, copy_images=copy_images)
        name = f"yolo:{path}:{split}"
    elif to == "coco":
        root = os.path.commonpath([os.path.dirname(r["file_name"]) for r in records]) if records else output
        path = os.path.join(output, "annotations", f"{split}.json")
        if info.json_file and os.path.abspath(info.json_file) == path:
            raise ValueError(f"{path} is the source annotation file: choose another output folder")
        write_coco_json(records, info, path, image_root=root)
        name = f"coco:{path}:{root}"
    else:
        raise ValueError(f"--to must be coco or yolo; got {to!r}")
    boxes = sum(len(r["boxes"]) for r in records)
    logger.info("%s: %d images, %d boxes, %d classes -> %s", source, len(records), boxes, info.num_classes, path)
    return name


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("source", metavar="DATASET",
                   help="dataset name: coco:ANN.json:IMAGES, voc:FOLDER:SPLIT, yolo:DATA.yaml:SPLIT, ...")
    p.add_argument("--to", required=True, choices=("coco", "yolo"), help="the format written")
    p.add_argument("--output", required=True, metavar="DIR", help="output folder")
    p.add_argument("--split", required=True, metavar="NAME", help="split name written (train, val, ...)")
    p.add_argument("--copy-images", action="store_true", help="--to yolo: copy the images instead of linking them")
    args = p.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s: %(message)s")
    name = convert(args.source, args.to, args.output, args.split, args.copy_images)
    print(name)
    return name


if __name__ == "__main__":
    run_tool(main)
