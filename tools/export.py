#!/usr/bin/env python
"""Export a trained detector to TorchScript or ONNX, then check the export against eager PyTorch.

    python tools/export.py --weights output/quickstart/model_final.pth --format onnx --output output/export
    python tools/export.py --config CFG --weights W --format torchscript --output DIR [KEY VALUE ...]

Writes DIR/model.ts (TorchScript) and/or DIR/model.onnx (ONNX, opset 17) and DIR/export.json (what
the model expects: input format, resize rule, pixel mean/std, class names; the parity report). The
module takes one image of any size: the (3, h, w) uint8 image resized as the data mapper does
(shorter side INPUT.MIN_SIZE_TEST, longer at most INPUT.MAX_SIZE_TEST) in INPUT.FORMAT channel
order (float32 (x - PIXEL_MEAN) / PIXEL_STD with --normalized-input), and the original (height,
width) as an int64 tensor; it returns boxes (D, 4) xyxy in original
pixels, scores (D,), labels (D,). Everything from normalisation to the mapping back to the original
image is inside the graph; decoding and resizing stay in Python.

After exporting, each file runs on --parity-images synthetic val images (TorchScript in PyTorch,
ONNX in onnxruntime) and is compared with eager PyTorch: every detection matched with the same
label, boxes within 1e-3 px, scores within 1e-4. Exits non-zero if they differ.
"""
import json
import logging
import os
import sys

from detection.config import load_config
from detection.engine.export import (FORMATS, describe_parity, export_model, load_exported, parity,
                                     synthetic_images)
from detection.engine.launch import default_parser, run_tool
from detection.engine.predictor import Predictor
from detection.utils.logger import setup_logger

logger = logging.getLogger("detection")


def main(argv=None) -> dict:
    p = default_parser(__doc__, "MODEL.ROI_HEADS.SCORE_THRESH_TEST 0.3 INPUT.MIN_SIZE_TEST 600")
    p.add_argument("--weights", required=True, metavar="FILE",
                   help="checkpoint (its own config is used unless --config is given)")
    p.add_argument("--format", default="onnx", choices=[*FORMATS, "all"], help="torchscript, onnx, or all")
    p.add_argument("--output", required=True, metavar="DIR", help="folder for the exported model and export.json")
    p.add_argument("--normalized-input", action="store_true",
                   help="the module takes float32 (image - PIXEL_MEAN) / PIXEL_STD instead of the uint8 image")
    p.add_argument("--parity-images", type=int, default=4, metavar="N",
                   help="synthetic images of the parity check (0 = none)")
    args = p.parse_args(argv)
    setup_logger(None)
    opts = ["MODEL.DEVICE", "cpu", *args.opts]
    if args.config:
        predictor = Predictor.from_checkpoint(args.weights, cfg=load_config(args.config, opts))
    else:
        predictor = Predictor.from_checkpoint(args.weights, opts)
    cfg, model, mapper = predictor.cfg, predictor.detector, predictor.mapper
    if model.task != "detection":
        p.error(f"export takes a detector; {args.weights} is a {model.task} model")
    formats = list(FORMATS) if args.format == "all" else [args.format]
    images = synthetic_images(max(1, args.parity_images))
    files = export_model(model, mapper.map_image(images[0]), args.output, formats, args.normalized_input)
    reports = {}
    for fmt, path in files.items():
        if args.parity_images > 0:
            reports[fmt] = parity(model, mapper, load_exported(path), images[:args.parity_images],
                                  normalized_input=args.normalized_input)
            log = logger.info if reports[fmt]["ok"] else logger.error
            log("%s", describe_parity(f"{fmt} vs eager", reports[fmt]))
    dtype = "float32 (x - pixel_mean) / pixel_std" if args.normalized_input else "uint8"
    info = {
        "files": {fmt: os.path.basename(path) for fmt, path in files.items()},
        "inputs": {"image": f"(3, h, w) {dtype}, {cfg.INPUT.FORMAT} channel order, resized",
                   "original_size": "(2,) int64: original height, width"},
        "outputs": {"boxes": "(D, 4) float32 xyxy, original pixels", "scores": "(D,) float32",
                    "labels": "(D,) int64, index into class_names"},
        "input_format": cfg.INPUT.FORMAT,
        "resize": {"min_size": cfg.INPUT.MIN_SIZE_TEST, "max_size": cfg.INPUT.MAX_SIZE_TEST,
                   "interpolation": cfg.INPUT.RESIZE_INTERP},
        "pixel_mean": list(cfg.MODEL.PIXEL_MEAN), "pixel_std": list(cfg.MODEL.PIXEL_STD),
        "class_names": list(predictor.class_names), "category_ids": predictor.metadata.get("category_ids"),
        "parity": {fmt: {k: v for k, v in r.items() if k != "images"} for fmt, r in reports.items()},
    }
    with open(os.path.join(args.output, "export.json"), "w") as f:
        json.dump(info, f, indent=1)
    return {"files": files, "parity": reports}


def cli() -> None:
    if not all(r["ok"] for r in main()["parity"].values()):
        sys.exit(1)


if __name__ == "__main__":
    run_tool(cli)
