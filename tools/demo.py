#!/usr/bin/env python
"""Detect objects in images and draw them.

    python tools/demo.py --config configs/quickstart.yaml --weights output/quickstart/model_final.pth \\
        --input datasets/synthetic/det_seed0_n1000-200_px256_jpg/images/val --output output/demo

For each image writes DIR/<path> (the image with boxes, class names and scores drawn, in its own
format) and DIR/<path>.json (a list of {"box": [x1, y1, x2, y2], "score", "label", "class"} in
original pixels). <path> is the image's path below the folder that holds all inputs, extension
kept, so a.jpg and a.png, or x.jpg in two folders, get outputs of their own. An output that would
replace an input image is refused before anything runs. Unreadable images are skipped and counted;
the exit status is 1 when no image could be read. A localization model (MODEL.META_ARCHITECTURE
PCRLocalizer) draws its top-5 classes, each with its box.
Videos, cameras, list files, recursive folders and one COCO results file: tools/predict.py.
"""
from __future__ import annotations

import argparse
import logging
import os

import cv2

from detection.data.image_io import IMAGE_EXTS, ImageReadError, read_image
from detection.engine.launch import default_parser, run_tool, setup
from detection.engine.predictor import Predictor
from detection.evaluation.thresholds import saved_best_f1_threshold
from detection.utils.io import write_json
from detection.utils.progress import Progress
from detection.utils.visualize import draw_detections

logger = logging.getLogger("detection")


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
    seen: set[str] = set()  # a file given twice is read once
    return [f for f in files if not (os.path.realpath(f) in seen or seen.add(os.path.realpath(f)))]


def output_paths(files: list[str], output: str) -> dict[str, tuple[str, str]]:
    """Input image -> (drawn image, json) under ``output``: the image's path below the folder that
    holds all inputs, extension kept. Raises ValueError if an output would replace an input."""
    absolute = [os.path.abspath(f) for f in files]
    common = os.path.commonpath([os.path.dirname(a) for a in absolute])
    inputs = {os.path.realpath(f): f for f in files}
    targets = {}
    for f, a in zip(files, absolute):
        drawn = os.path.join(output, os.path.relpath(a, common))
        for out in (drawn, drawn + ".json"):
            if os.path.realpath(out) in inputs:
                raise ValueError(f"--output {output}: writing {out} would replace the input image "
                                 f"{inputs[os.path.realpath(out)]}; give an output folder that holds no input images")
        targets[f] = (drawn, drawn + ".json")
    return targets


def _score_thresh(text: str):
    if text == "best":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'best', got {text!r}") from None


def best_score_thresh(weights: str, output_dir: str, default: float = 0.5) -> float:
    """The overall best-F1 threshold saved with the model's last evaluation, else ``default``."""
    folders = [os.path.dirname(os.path.abspath(weights))] if weights else []
    found = saved_best_f1_threshold(folders + [output_dir])
    if found is None:
        logger.warning("--score-thresh best: no evaluation with a best-F1 threshold found in %s "
                       "(eval/*/metrics.json); using %.2f", " or ".join(folders + [output_dir]), default)
        return default
    logger.info("--score-thresh best: %.4f, the best-F1 threshold of %s", found[0], found[1])
    return found[0]


def main(argv=None) -> list[str]:
    parser = default_parser(__doc__, "INPUT.MIN_SIZE_TEST 600 INPUT.MAX_SIZE_TEST 1000 MODEL.DEVICE cuda")
    parser.add_argument("--weights", default=None, metavar="FILE", help="checkpoint (default: MODEL.WEIGHTS)")
    parser.add_argument("--input", nargs="+", required=True, metavar="PATH",
                        help="images, or folders whose images (jpg, png, bmp, tif, webp) are all read")
    parser.add_argument("--output", required=True, metavar="DIR", help="folder for the drawn images and json files")
    parser.add_argument("--score-thresh", type=_score_thresh, default=0.5, metavar="T",
                        help="draw and write detections with a score of at least this; 'best': the best-F1 "
                             "threshold of the model's last evaluation (eval/*/metrics.json next to the weights "
                             "or in OUTPUT_DIR)")
    args = parser.parse_args(argv)
    files = list_images(args.input)
    try:
        targets = output_paths(files, args.output)
    except ValueError as e:
        parser.error(str(e))
    cfg = setup(args)
    if args.score_thresh == "best":
        args.score_thresh = best_score_thresh(args.weights or cfg.MODEL.WEIGHTS, cfg.OUTPUT_DIR)
    predictor = Predictor(cfg, args.weights)
    written, skipped = [], 0
    with Progress(len(files), "demo", unit="img") as progress:
        for path in files:
            progress.update()
            try:
                image = read_image(path, "BGR")
            except ImageReadError as e:
                logger.error("skipping %s", e)
                skipped += 1
                continue
            out = predictor(image, "BGR")
            keep = out["scores"] >= args.score_thresh
            dets = [{"box": [round(float(v), 2) for v in b], "score": round(float(s), 4), "label": int(l),
                     "class": c}
                    for b, s, l, c, k in zip(out["boxes"], out["scores"], out["labels"], out["classes"], keep) if k]
            drawn, json_path = targets[path]
            os.makedirs(os.path.dirname(drawn) or ".", exist_ok=True)
            if not cv2.imwrite(drawn, draw_detections(image, dets)):
                raise OSError(f"cannot write {drawn}")
            write_json(json_path, dets, indent=1)
            logger.debug("%s: %d detections >= %.2f", path, len(dets), args.score_thresh)
            written.append(json_path)
    logger.info("demo: %d image(s) processed, %d skipped (unreadable); outputs in %s", len(written), skipped,
                args.output)
    if not written:
        raise SystemExit(f"demo: none of the {len(files)} input image(s) could be read; nothing written")
    return written


if __name__ == "__main__":
    run_tool(main)
