"""Evaluate a COCO results file against a COCO ground-truth file, without a model.

``python tools/eval.py --gt val.json --dt output/detections.json [--output-dir DIR]``
(``tools/eval.py`` calls :func:`main`). Class names come from the ground-truth categories,
the contiguous order being the order of increasing category id. The metrics, table and
files are those of ``DetectionEvaluator`` (metrics.json, report.txt, plots), evaluated over
*all* images of the ground truth (a results file cannot say which images were run).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List, Optional

from .coco_eval import load_coco_gt, load_json, validate_results
from .evaluator import compute_detection_metrics
from .explain import image_paths_from_coco

__all__ = ["evaluate_files", "main", "build_parser", "add_explain_arguments"]


def evaluate_files(gt_json, dt_json, output_dir: Optional[str] = None, plot: bool = True, verbose: bool = True,
                   iou_threshold: float = 0.5, score_thresh: Optional[float] = None,
                   image_root: Optional[str] = None) -> Dict:
    """Metrics (the ``DetectionEvaluator.evaluate`` dict) of the results file ``dt_json``.

    ``iou_threshold`` / ``score_thresh``: the confusion matrix's (``explain_detections``).
    ``image_root``: where the ground truth's relative ``file_name``s are, for drawing the worst
    images (default: the folder of ``gt_json``; absolute file names are used as they are).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for malformed json
    (the message names the file, line and column) or for detections with unknown image or
    category ids (the message names them). ``output_dir=None`` writes nothing.
    """
    coco_gt = load_coco_gt(gt_json)
    results = load_json(dt_json, "detections json")
    if isinstance(results, dict) and isinstance(results.get("annotations"), list):
        results = results["annotations"]  # a gt-style dict holding results is accepted
    validate_results(results, coco_gt, source=f"detections json {os.fspath(dt_json)}")
    cats = sorted(coco_gt.dataset["categories"], key=lambda c: c["id"])
    class_names = [str(c.get("name", c["id"])) for c in cats]
    category_ids = [c["id"] for c in cats]
    if image_root is None and not isinstance(gt_json, dict):
        image_root = os.path.dirname(os.path.abspath(gt_json))
    return compute_detection_metrics(
        coco_gt, results, class_names, category_ids, img_ids=None, output_dir=output_dir, plot=plot, verbose=verbose,
        image_paths=image_paths_from_coco(coco_gt, image_root), iou_threshold=iou_threshold, score_thresh=score_thresh,
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Evaluate a COCO-format detections file (COCO AP + PASCAL VOC AP).")
    p.add_argument("--gt", required=True, help="ground truth, COCO json (crowd/difficult boxes: iscrowd 1)")
    p.add_argument("--dt", required=True, help="detections, COCO results json [{image_id, category_id, bbox xywh, score}]")
    p.add_argument("--output-dir", "--output", dest="output_dir", default=None, help="where metrics.json, report.txt and plots go (default: next to --dt)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG plots")
    add_explain_arguments(p)
    return p


def add_explain_arguments(p: argparse.ArgumentParser) -> None:
    """``--iou``, ``--score-thresh`` (the confusion matrix's) and ``--image-root``."""
    p.add_argument("--iou", type=float, default=0.5, help="IoU threshold of the confusion matrix (default 0.5)")
    p.add_argument("--score-thresh", type=float, default=None,
                   help="score threshold of the confusion matrix and drawings (default: per-class best F1)")
    p.add_argument("--image-root", default=None,
                   help="folder of the ground truth's relative file_names, for drawing (default: next to --gt)")


def main(argv: Optional[List[str]] = None) -> int:
    """Command-line entry; returns the exit status (0 ok, 2 bad input)."""
    args = build_parser().parse_args(argv)
    output_dir = args.output_dir if args.output_dir is not None else os.path.dirname(os.path.abspath(args.dt))
    try:
        evaluate_files(args.gt, args.dt, output_dir, plot=not args.no_plot, iou_threshold=args.iou,
                       score_thresh=args.score_thresh, image_root=args.image_root)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"metrics written to {os.path.join(output_dir, 'metrics.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
