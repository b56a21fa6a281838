#!/usr/bin/env python
"""Evaluate a model on DATASETS.TEST, or a results file without a model.

    python tools/eval.py --config configs/coco_r101.yaml --weights model_final.pth [KEY VALUE ...]
    python tools/eval.py --gt annotations.json --dt detections.json [--output DIR]
    torchrun --nproc_per_node 8 tools/eval.py --config ... --weights ...

Prints mAP@0.5 (the headline), COCO AP/AP50/AP75/APs/APm/APl (pycocotools), PASCAL VOC mAP@0.5
(2007 11-point and area rules) and per-class AP; writes OUTPUT_DIR/eval/<dataset>/metrics.json
and detections.json (COCO results format, original category ids), and what explains the errors
there: confusion matrix (--iou, --score-thresh), F1 against score, error breakdown, the worst
images drawn, index.html.
"""
import json
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detection.engine.launch import default_parser, setup  # noqa: E402
from detection.evaluation.cli import add_explain_arguments  # noqa: E402

logger = logging.getLogger("detection")


def main(argv=None) -> dict:
    parser = default_parser(__doc__)
    parser.add_argument("--weights", default=None, help="checkpoint (default: MODEL.WEIGHTS)")
    parser.add_argument("--gt", default=None, help="COCO-format ground truth json (results-file mode)")
    parser.add_argument("--dt", default=None, help="COCO results json (results-file mode)")
    parser.add_argument("--output", default=None, help="results-file mode: where metrics.json goes")
    add_explain_arguments(parser)
    args = parser.parse_args(argv)
    if not 0.0 < args.iou <= 1.0:
        parser.error(f"--iou must be in (0, 1], got {args.iou}")
    if args.gt or args.dt:
        if not (args.gt and args.dt):
            parser.error("--gt and --dt go together")
        from detection.evaluation.cli import evaluate_files

        return evaluate_files(args.gt, args.dt, args.output or os.path.dirname(os.path.abspath(args.dt)),
                              iou_threshold=args.iou, score_thresh=args.score_thresh, image_root=args.image_root)
    if not args.config:
        parser.error("give --config (model mode) or --gt and --dt (results-file mode)")
    from detection.checkpoint import load_weights
    from detection.engine.inference import evaluate
    from detection.modeling import build_model

    cfg = setup(args)
    model = build_model(cfg)
    weights = args.weights if args.weights is not None else cfg.MODEL.WEIGHTS
    if not weights:
        parser.error("no weights: give --weights or MODEL.WEIGHTS")
    load_weights(model, weights)
    results = evaluate(cfg, model, iou_threshold=args.iou, score_thresh=args.score_thresh)
    logger.info("results: %s", json.dumps({n: {k: m.get(k) for k in ("AP50", "AP", "loc_err_gt")} for n, m in
                                           results.items()}))
    return results


if __name__ == "__main__":
    main()
