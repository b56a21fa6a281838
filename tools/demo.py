#!/usr/bin/env python
"""Detect objects in images and draw them.

    python tools/demo.py --config configs/quickstart.yaml --weights output/quickstart/model_final.pth \\
        --input datasets/synthetic/det_seed0_n1000-200_px256_jpg/images/val --output output/demo

For each image writes DIR/<name>.jpg (boxes, class names, scores drawn) and DIR/<name>.json
(a list of {"box": [x1, y1, x2, y2], "score", "label", "class"} in original pixels). A localization
model (MODEL.META_ARCHITECTURE PCRLocalizer) draws its top-5 classes, each with its box.
"""
from __future__ import annotations

import logging
import os

import cv2

from detection.data.image_io import ImageReadError, read_image
from detection.engine.launch import default_parser, setup
from detection.engine.predictor import Predictor
from detection.utils.io import write_json
from detection.utils.visualize import draw_detections

logger = logging.getLogger("detection")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def list_images(paths: list[str]) -> list[str]:
    files = []
    for p in paths:
        if os.path.isdir(p):
            files += sorted(os.path.join(p, f) for f in os.listdir(p) if f.lower().endswith(IMAGE_EXTS))
        elif os.path.isfile(p):
            files.append(p)
        else:
            raise FileNotFoundError(f"--input {p}: no such file or folder")
    if not files:
        raise FileNotFoundError(f"--input {paths}: no images found")
    return files


def main(argv=None) -> list[str]:
    parser = default_parser(__doc__, "INPUT.MIN_SIZE_TEST 600 INPUT.MAX_SIZE_TEST 1000 MODEL.DEVICE cuda")
    parser.add_argument("--weights", default=None, metavar="FILE", help="checkpoint (default: MODEL.WEIGHTS)")
    parser.add_argument("--input", nargs="+", required=True, metavar="PATH",
                        help="images, or folders whose images (jpg, png, bmp, tif, webp) are all read")
    parser.add_argument("--output", required=True, metavar="DIR", help="folder for the drawn images and json files")
    parser.add_argument("--score-thresh", type=float, default=0.5, metavar="T",
                        help="draw and write detections with a score of at least this")
    args = parser.parse_args(argv)
    cfg = setup(args)
    predictor = Predictor(cfg, args.weights)
    os.makedirs(args.output, exist_ok=True)
    written = []
    for path in list_images(args.input):
        try:
            image = read_image(path, "BGR")
        except ImageReadError as e:
            logger.error("skipping %s", e)
            continue
        out = predictor(image, "BGR")
        keep = out["scores"] >= args.score_thresh
        dets = [{"box": [round(float(v), 2) for v in b], "score": round(float(s), 4), "label": int(l), "class": c}
                for b, s, l, c, k in zip(out["boxes"], out["scores"], out["labels"], out["classes"], keep) if k]
        name = os.path.splitext(os.path.basename(path))[0]
        cv2.imwrite(os.path.join(args.output, f"{name}.jpg"), draw_detections(image, dets))
        write_json(os.path.join(args.output, f"{name}.json"), dets, indent=1)
        logger.info("%s: %d detections >= %.2f", path, len(dets), args.score_thresh)
        written.append(os.path.join(args.output, f"{name}.json"))
    return written


if __name__ == "__main__":
    main()
