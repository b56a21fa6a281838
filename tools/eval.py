#!/usr/bin/env python
"""Evaluate a model on DATASETS.TEST, or a results file without a model.

    python tools/eval.py --config configs/coco_r101.yaml --weights model_final.pth [KEY VALUE ...]
    python tools/eval.py --gt annotations.json --dt detections.json [--output DIR]
    torchrun --nproc_per_node 8 tools/eval.py --config ... --weights ...

Prints mAP@0.5 (the headline), COCO AP/AP50/AP75/APs/APm/APl (pycocotools), PASCAL VOC mAP@0.5
(2007 11-point and area rules) and per-class AP; writes OUTPUT_DIR/eval/<dataset>/metrics.json
and detections.json (COCO results format, original category ids).
"""
import json
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detection.engine.launch import default_parser, setup  # noqa: E402

logger = logging.getLogger("detection")


def main(argv=None) -> dict:
    parser = default_parser(__doc__)
    parser.add_argument("--weights", default=None, help="checkpoint (default: MODEL.WEIGHTS)")
    parser.add_argument("--gt", default=None, help="COCO-format ground truth json (results-file mode)")
    parser.add_argument("--dt", default=None, help="COCO results json (results-file mode)")
    parser.add_argument("--output", default=None, help="results-file mode: where metrics.json goes")
    args = parser.parse_args(argv)
    if args.gt or args.dt:
        if not (args.gt and args.dt):
            parser.error("--gt and --dt go together")
        from detection.evaluation.cli import evaluate_files

        return evaluate_files(args.gt, args.dt, args.output or os.path.dirname(os.path.abspath(args.dt)))
    if not args.config:
        parser.error("give --config (model mode) or --gt and --dt (results-file mode)")
    from detection.checkpoint import load_weights
    from detection.engine.classes import resolve_classes
    from detection.engine.inference import evaluate
    from detection.modeling import build_model

    cfg = setup(args)
    weights = args.weights if args.weights is not None else cfg.MODEL.WEIGHTS
    if not weights:
        parser.error("no weights: give --weights or MODEL.WEIGHTS")
    cfg, _ = resolve_classes(cfg, cfg.DATASETS.TEST, weights)  # before anything is built
    model = build_model(cfg)
    load_weights(model, weights)
    results = evaluate(cfg, model)
    logger.info("results: %s", json.dumps({n: {k: m.get(k) for k in ("AP50", "AP", "loc_err_gt")} for n, m in
                                           results.items()}))
    return results


if __name__ == "__main__":
    main()
