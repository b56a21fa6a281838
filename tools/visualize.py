#!/usr/bin/env python
"""Look at the images: ground truth of a dataset, or ground truth next to the detections.

    python tools/visualize.py data --config C [--augmented] [--dataset NAME] --output DIR [KEY VALUE ...]
    python tools/visualize.py results --config C --output DIR [KEY VALUE ...]
    python tools/visualize.py results --gt G --dt D --output DIR [--image-root R]

``data`` draws the ground truth (class names; crowd / ignore boxes grey) of DATASETS.TRAIN[0]
(or --dataset), as read from the files or, with --augmented, the images training sees (empty
ones filtered as DATASETS.FILTER_EMPTY_TRAIN says) after the training augmentation and resize
(seed fixed per image), to check labels and transforms.

``results`` draws each image's ground truth and detections coloured by outcome (true positive,
false positive by error type, missed box; see detection/evaluation/worst_images.py), worst
images first (``<rank>_<image id>.jpg``), and a contact sheet of the worst --num. With --config
it reads the last evaluation, OUTPUT_DIR/eval/<dataset>/detections.json, of each DATASETS.TEST.
Detections below their class's best-F1 score threshold (or --score-thresh) are not drawn.
"""
from __future__ import annotations

import argparse
import logging
import os

import cv2
import numpy as np

from detection.config import load_config
from detection.data import DatasetMapper, get_dataset
from detection.data.coco import gt_json_for
from detection.data.image_io import ImageReadError, read_image
from detection.engine.inference import eval_output_dir
from detection.engine.launch import HelpFormatter, add_overrides_argument, run_tool
from detection.evaluation.coco_eval import load_coco_gt, validate_results
from detection.evaluation.explain import explain_detections, image_paths_from_coco
from detection.evaluation.voc_eval import voc_eval_coco
from detection.evaluation.worst_images import write_worst_images
from detection.utils.io import read_json
from detection.utils.visualize import color_for, contact_sheet, draw_boxes

logger = logging.getLogger("detection")
IGNORE = (190, 190, 190)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    d = sub.add_parser("data", help="draw the ground truth of a dataset", formatter_class=HelpFormatter)
    d.add_argument("--config", required=True, metavar="FILE", help="YAML config")
    d.add_argument("--dataset", default=None, help="dataset name (default: DATASETS.TRAIN[0])")
    d.add_argument("--augmented", action="store_true", help="after the training augmentation and resize")
    d.add_argument("--max-images", type=int, default=50, metavar="N", help="draw at most this many images (default 50)")
    r = sub.add_parser("results", help="draw ground truth and detections by outcome, worst first",
                       formatter_class=HelpFormatter)
    r.add_argument("--config", default=None, metavar="FILE",
                   help="YAML config (reads OUTPUT_DIR/eval/<dataset>/detections.json)")
    r.add_argument("--gt", default=None, metavar="FILE", help="COCO ground-truth json (with --dt)")
    r.add_argument("--dt", default=None, metavar="FILE", help="COCO results json (with --gt)")
    r.add_argument("--image-root", default=None, metavar="DIR",
                   help="folder of the gt's relative file_names (default: next to --gt)")
    r.add_argument("--score-thresh", type=float, default=None, metavar="T", help="draw detections above this (default: best F1)")
    r.add_argument("--max-images", type=int, default=None, metavar="N", help="draw at most this many images (default: all)")
    r.add_argument("--num", type=int, default=16, metavar="N", help="images on the contact sheet (default 16)")
    for q in (d, r):
        q.add_argument("--output", required=True, metavar="DIR", help="folder for the drawn images")
        add_overrides_argument(q, "DATASETS.TEST \"['synthetic_val']\" OUTPUT_DIR output/quickstart")
    return p


def _sample_to_bgr(sample: dict, fmt: str) -> np.ndarray:
    image = sample["image"].permute(1, 2, 0).numpy()
    return np.ascontiguousarray(image if fmt == "BGR" else image[:, :, ::-1])


def draw_data(cfg, name: str | None, augmented: bool, output: str, max_images: int) -> list[str]:
    """Draw the ground truth of ``name`` (default DATASETS.TRAIN[0]); returns the written files."""
    name = name or cfg.DATASETS.TRAIN[0]
    records, info = get_dataset(name, cfg, is_train=augmented)
    mapper = DatasetMapper(cfg, is_train=True) if augmented else None
    os.makedirs(output, exist_ok=True)
    written, sheet, captions = [], [], []
    for k, rec in enumerate(records[:max_images]):
        try:
            if mapper is not None:
                sample = mapper(rec, seed=k)
                image = _sample_to_bgr(sample, cfg.INPUT.FORMAT)
                boxes, labels = sample["boxes"].numpy(), sample["labels"].numpy()
                ignore = np.zeros(len(labels), dtype=bool)
            else:
                image = read_image(rec["file_name"], "BGR")
                boxes, labels, ignore = rec["boxes"], rec["labels"], rec["ignore"]
        except ImageReadError as e:
            logger.error("skipping %s", e)
            continue
        colors = [IGNORE if ig else color_for(int(lab)) for lab, ig in zip(labels, ignore)]
        texts = [("ignore " if ig else "") + info.class_names[int(lab)] for lab, ig in zip(labels, ignore)]
        drawn = draw_boxes(image, boxes, texts, colors)
        path = os.path.join(output, f"{rec['image_id']}.jpg")
        cv2.imwrite(path, drawn)
        written.append(path)
        if len(sheet) < 16:
            sheet.append(drawn)
            captions.append(f"id {rec['image_id']}: {len(labels)} boxes")
    if sheet:
        cv2.imwrite(os.path.join(output, "contact_sheet.jpg"), contact_sheet(sheet, captions))
    print(f"{len(written)} images of {name}{' (augmented)' if augmented else ''} drawn into {output}")
    return written


def draw_results(gt_json, dt_json, output: str, image_paths: dict | None, image_root: str | None,
                 score_thresh: float | None, max_images: int | None, num: int) -> list[dict]:
    """Draw a results file against its ground truth, worst images first; returns the drawn entries."""
    coco_gt = load_coco_gt(gt_json)
    results = read_json(dt_json, "detections json")
    validate_results(results, coco_gt, source=f"detections json {dt_json}")
    category_ids = sorted(c["id"] for c in coco_gt.dataset["categories"])
    names = {c["id"]: str(c.get("name", c["id"])) for c in coco_gt.dataset["categories"]}
    class_names = [names[c] for c in category_ids]
    voc = voc_eval_coco(coco_gt.dataset, results, category_ids)
    ex = explain_detections(coco_gt, results, category_ids, None, voc, score_thresh=score_thresh)
    if image_paths is None:
        image_paths = image_paths_from_coco(coco_gt, image_root or os.path.dirname(os.path.abspath(gt_json)))
    b = ex["breakdown"]
    drawn = write_worst_images(output, ex["ranking"], image_paths, ex["gt"], ex["dt"], b["outcome"], b["target"],
                               ex["thresholds"], class_names, num=max_images or len(ex["ranking"]), sheet=num)
    print(f"{len(drawn)} images drawn into {output}, worst first (contact_sheet.jpg: the worst {min(num, len(drawn))})")
    return drawn


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.mode == "data":
        return draw_data(load_config(args.config, args.opts), args.dataset, args.augmented, args.output,
                         args.max_images)
    if bool(args.gt) != bool(args.dt) or bool(args.gt) == bool(args.config):
        build_parser().error("results: give --config, or --gt and --dt")
    if args.gt:
        return draw_results(args.gt, args.dt, args.output, None, args.image_root, args.score_thresh,
                            args.max_images, args.num)

    cfg = load_config(args.config, args.opts)
    drawn = []
    for name in cfg.DATASETS.TEST:
        eval_dir = eval_output_dir(cfg.OUTPUT_DIR, name)
        dt = os.path.join(eval_dir, "detections.json")
        if not os.path.isfile(dt):
            raise FileNotFoundError(f"{dt}: no detections of {name}; run tools/eval.py with this config first")
        records, info = get_dataset(name, cfg, is_train=False)
        paths = {int(r["image_id"]): r["file_name"] for r in records}
        out = os.path.join(args.output, os.path.basename(eval_dir)) if len(cfg.DATASETS.TEST) > 1 else args.output
        drawn += draw_results(gt_json_for(info, records, eval_dir), dt, out, paths, None, args.score_thresh,
                              args.max_images, args.num)
    return drawn


if __name__ == "__main__":
    run_tool(main)
