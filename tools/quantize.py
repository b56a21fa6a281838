#!/usr/bin/env python
"""INT8 post-training quantization of a trained model's trunk and res5, for x86 CPUs.

    python tools/quantize.py --config configs/quickstart.yaml --weights output/quickstart/model_final.pth --eval
    python tools/eval.py --config configs/quickstart.yaml --weights output/quickstart/model_final.pth \\
        TEST.INT8 output/quickstart/int8

Calibrates on --images images of DATASETS.TRAIN[0] (test-time resizing, no augmentation: what
inference will see), writes the int8 trunk and res5 into --output (default OUTPUT_DIR/int8) with
int8.json, and with --eval evaluates the model on DATASETS.TEST in fp32 (BatchNorm folded) and in
int8 and prints the change of mAP@0.5 (of loc_err_gt for a localizer): int8 is recommended only
when mAP@0.5 drops by less than 1 point. Any tool then runs the int8 model with TEST.INT8 DIR and
the same weights. Needs torchao (pip install -e .[int8]) and a C++ compiler (torch.compile).
"""
from __future__ import annotations

import logging
import os
import time

from detection.checkpoint import load_weights
from detection.data import build_test_loader
from detection.engine.best import default_metric, metric_mode
from detection.engine.classes import resolve_classes
from detection.engine.inference import evaluate
from detection.engine.launch import default_parser, run_tool, setup
from detection.fastpath import quantize_int8
from detection.modeling import build_model
from detection.utils.io import read_json, write_json
from detection.utils.progress import Progress

logger = logging.getLogger("detection")

EXAMPLE = "DATASETS.TRAIN \"['coco_2017_train']\" OUTPUT_DIR output/coco_r101"
TOLERANCE_AP50 = 1.0  # points of mAP@0.5: the most int8 may lose to be recommended


def build_parser():
    p = default_parser(__doc__, EXAMPLE)
    p.add_argument("--weights", default=None, metavar="FILE", help="checkpoint (default: MODEL.WEIGHTS)")
    p.add_argument("--images", type=int, default=200, metavar="N", help="calibration images from DATASETS.TRAIN[0]")
    p.add_argument("--output", default=None, metavar="DIR", help="where the int8 parts go (default: OUTPUT_DIR/int8)")
    p.add_argument("--eval", action="store_true",
                   help="evaluate fp32 and int8 on DATASETS.TEST and record the accuracy change in int8.json")
    return p


def calibration_batches(cfg, n: int):
    """(how many, batches): the first ``n`` images of DATASETS.TRAIN[0], mapped as at test time, in
    TEST.IMS_PER_BATCH batches."""
    if not cfg.DATASETS.TRAIN:
        raise ValueError("DATASETS.TRAIN is empty: the calibration images come from its first dataset")
    loader, records, _ = build_test_loader(cfg, cfg.DATASETS.TRAIN[0], rank=0, world_size=1)
    n = min(n, len(records))

    def batches():
        taken = 0
        for batch in loader:
            batch = batch[: n - taken]
            taken += len(batch)
            yield batch
            if taken >= n:
                return

    return n, batches()


def headline(task: str, metrics: dict) -> tuple[str, float]:
    """(metric, value) of the first test dataset: what TEST.BEST_METRIC defaults to for ``task``."""
    key = default_metric("loc" if task == "localization" else "coco")
    return key, float(next(iter(metrics.values()))[key])


def main(argv=None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.images < 1:
        parser.error(f"--images must be at least 1; got {args.images}")
    cfg = setup(args)
    weights = args.weights if args.weights is not None else cfg.MODEL.WEIGHTS
    if not weights:
        parser.error("no weights: give --weights or MODEL.WEIGHTS (quantizing random weights means nothing)")
    if cfg.MODEL.DEVICE != "cpu":
        parser.error(f"int8 runs on the CPU; MODEL.DEVICE is {cfg.MODEL.DEVICE}")
    cfg, _ = resolve_classes(cfg, cfg.DATASETS.TEST, weights)
    cfg.MODEL.WEIGHTS = weights
    model = build_model(cfg).eval()
    load_weights(model, weights, cfg=cfg)
    output = args.output or os.path.join(cfg.OUTPUT_DIR, "int8")
    n, batches = calibration_batches(cfg, args.images)
    start = time.perf_counter()
    with Progress(n, "int8 calibration", logger=logger) as bar:
        quantize_int8(model, batches, output, progress=lambda images: bar.update(images - bar.done))
    summary = {"int8": output, "calibration_s": round(time.perf_counter() - start, 1)}
    print(f"int8 trunk and res5 written to {output} ({summary['calibration_s']} s); "
          f"run them with TEST.INT8 {output} and MODEL.WEIGHTS {weights}")
    if args.eval:
        summary.update(compare(cfg, model, output))
    return summary


def compare(cfg, model, int8_dir: str) -> dict:
    """fp32 (folded) and int8 metrics on DATASETS.TEST, each into its own OUTPUT_DIR/eval_<mode>."""
    out = {}
    base_dir = cfg.OUTPUT_DIR
    for mode, path in (("fp32", ""), ("int8", int8_dir)):
        cfg.TEST.INT8 = path
        cfg.OUTPUT_DIR = os.path.join(base_dir, f"eval_{mode}")
        start = time.perf_counter()
        key, value = headline(model.task, evaluate(cfg, model, plot=False))
        out[mode] = {key: value, "seconds": round(time.perf_counter() - start, 1)}
    cfg.OUTPUT_DIR, cfg.TEST.INT8 = base_dir, ""
    key = next(iter(out["fp32"]))
    change = out["int8"][key] - out["fp32"][key]
    loss = -change if metric_mode(key) == "max" else change  # loc_err_gt: lower is better
    out["change"] = round(change, 3)
    out["recommended"] = bool(loss < TOLERANCE_AP50)
    print(f"{key}: fp32 {out['fp32'][key]:.2f} ({out['fp32']['seconds']} s), int8 {out['int8'][key]:.2f} "
          f"({out['int8']['seconds']} s), change {change:+.2f}: int8 is "
          f"{'recommended' if out['recommended'] else 'NOT recommended'} (tolerance {TOLERANCE_AP50} point)")
    meta_path = os.path.join(int8_dir, "int8.json")
    write_json(meta_path, {**read_json(meta_path), "accuracy": {"datasets": list(cfg.DATASETS.TEST), **out}}, indent=1)
    return out


if __name__ == "__main__":
    run_tool(main)
