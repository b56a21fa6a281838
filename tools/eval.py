#!/usr/bin/env python
"""Evaluate a model on DATASETS.TEST, or a results file without a model.

    python tools/eval.py --config configs/coco_r101.yaml --weights model_final.pth [KEY VALUE ...]
    torchrun --nproc_per_node 8 tools/eval.py --config configs/coco_r101.yaml --weights model_final.pth
    python tools/eval.py --gt annotations.json --dt detections.json [--output DIR] [--no-plot]

Model mode prints mAP@0.5 (the headline), COCO AP/AP50/AP75/APs/APm/APl (pycocotools), PASCAL VOC
mAP@0.5 (2007 11-point and area rules) and per-class AP, and writes into OUTPUT_DIR/eval/<dataset>/:
metrics.json, report.txt, detections.json (COCO results format, original category ids), the plots,
and what explains the errors: confusion matrix (--iou, --score-thresh), F1 against score, error
breakdown, the worst images drawn, index.html (localization datasets: metrics.json and report.txt).

Results-file mode (--gt and --dt: a COCO ground-truth json and a COCO results json) computes the
same metrics and explanations over all images of the ground truth and writes them into --output
(default: the folder of --dt). There is no model and no dataset here, so the only KEY VALUE
override that means something is OUTPUT_DIR (the same as --output); any other is an error. Bad
input (a missing file, malformed json, unknown image or category ids) exits with status 2 and a
message naming the file and the problem.
"""
from __future__ import annotations

import argparse
import json
import logging
import os

from detection.checkpoint import load_weights
from detection.engine.classes import resolve_classes
from detection.engine.inference import evaluate
from detection.engine.launch import default_parser, run_tool, setup
from detection.evaluation import evaluate_files
from detection.modeling import build_model

logger = logging.getLogger("detection")

EXAMPLE = "DATASETS.TEST \"['coco_2017_val']\" TEST.IMS_PER_BATCH 4 OUTPUT_DIR output/eval_r101"


def build_parser() -> argparse.ArgumentParser:
    parser = default_parser(__doc__, EXAMPLE)
    parser.add_argument("--weights", default=None, metavar="FILE", help="checkpoint (default: MODEL.WEIGHTS)")
    parser.add_argument("--gt", default=None, metavar="FILE",
                        help="results-file mode: ground truth, COCO json (crowd / difficult boxes: iscrowd 1)")
    parser.add_argument("--dt", default=None, metavar="FILE",
                        help="results-file mode: detections, COCO results json "
                             "[{image_id, category_id, bbox [x, y, w, h], score}]")
    parser.add_argument("--output", "--output-dir", dest="output", default=None, metavar="DIR",
                        help="results-file mode: where metrics.json, report.txt and the plots go "
                             "(default: the folder of --dt)")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG plots")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="results-file mode: leave out (and count) detections with missing fields or "
                             "non-finite values instead of stopping")
    parser.add_argument("--iou", type=float, default=0.5, metavar="T", help="IoU threshold of the confusion matrix")
    parser.add_argument("--score-thresh", type=float, default=None, metavar="T",
                        help="score threshold of the confusion matrix and the drawings (default: per-class best F1)")
    parser.add_argument("--image-root", default=None, metavar="DIR",
                        help="results-file mode: folder of the ground truth's relative file_names, for drawing "
                             "(default: the folder of --gt)")
    return parser


def results_file_output(parser: argparse.ArgumentParser, args) -> str:
    """The output folder of results-file mode: --output, or an OUTPUT_DIR override, or next to --dt.
    Every other override is rejected, since nothing here reads the config."""
    opts = list(args.opts)
    if len(opts) % 2:
        parser.error(f"config overrides must be KEY VALUE pairs; got an odd count: {opts}")
    pairs = dict(zip(opts[0::2], opts[1::2]))
    ignored = sorted(set(pairs) - {"OUTPUT_DIR"})
    if ignored:
        parser.error(f"results-file mode (--gt/--dt) reads no config: the override(s) {', '.join(ignored)} "
                     "would have no effect; only OUTPUT_DIR (or --output) is used here")
    if args.config or args.weights:
        parser.error("--config and --weights are for model mode; results-file mode (--gt/--dt) uses no model")
    if "OUTPUT_DIR" in pairs and args.output is not None and pairs["OUTPUT_DIR"] != args.output:
        parser.error(f"--output {args.output} and OUTPUT_DIR {pairs['OUTPUT_DIR']} disagree; give one")
    return args.output or pairs.get("OUTPUT_DIR") or os.path.dirname(os.path.abspath(args.dt))


def main(argv: list[str] | None = None) -> dict:
    """Model mode: {dataset: metrics}; results-file mode: the metrics. Bad input exits with status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0.0 < args.iou <= 1.0:
        parser.error(f"--iou must be in (0, 1], got {args.iou}")
    if args.gt or args.dt:
        if not (args.gt and args.dt):
            parser.error("--gt and --dt go together")
        output_dir = results_file_output(parser, args)
        try:
            metrics = evaluate_files(args.gt, args.dt, output_dir, plot=not args.no_plot,
                                     skip_invalid=args.skip_invalid, iou_threshold=args.iou,
                                     score_thresh=args.score_thresh, image_root=args.image_root)
        except (FileNotFoundError, ValueError) as e:
            parser.error(str(e))
        print(f"metrics written to {os.path.join(output_dir, 'metrics.json')}")
        return metrics
    if not args.config:
        parser.error("give --config (model mode) or --gt and --dt (results-file mode)")
    if args.output is not None:
        parser.error("--output is for results-file mode; in model mode give OUTPUT_DIR DIR "
                     "(files go to OUTPUT_DIR/eval/<dataset>/)")
    cfg = setup(args)
    weights = args.weights if args.weights is not None else cfg.MODEL.WEIGHTS
    if not weights:
        parser.error("no weights: give --weights or MODEL.WEIGHTS")
    cfg, _ = resolve_classes(cfg, cfg.DATASETS.TEST, weights)  # before anything is built
    model = build_model(cfg)
    load_weights(model, weights, cfg=cfg)  # partial weights refused unless MODEL.ALLOW_PARTIAL_WEIGHTS
    results = evaluate(cfg, model, plot=not args.no_plot, iou_threshold=args.iou, score_thresh=args.score_thresh)
    logger.info("results: %s", json.dumps({n: {k: m.get(k) for k in ("AP50", "AP", "loc_err_gt")} for n, m in
                                           results.items()}))
    return results


if __name__ == "__main__":
    run_tool(main)
