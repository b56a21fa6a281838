#!/usr/bin/env python
"""Train (and evaluate) a detector.

    python tools/train_net.py --config configs/quickstart.yaml
    python tools/train_net.py --config configs/coco_r101.yaml --resume
    python tools/train_net.py --config configs/coco_r101.yaml --eval-only MODEL.WEIGHTS output/model_final.pth
    torchrun --nproc_per_node 8 tools/train_net.py --config configs/coco_r101.yaml
    python tools/train_net.py --config configs/coco_r101.yaml --num-gpus 8     # same, torchrun started for you
"""
from __future__ import annotations

import json
import logging
import os

from detection.checkpoint import load_weights
from detection.data import build_train_loader, get_dataset_info
from detection.engine.best import default_metric, known_metrics, metric_mode
from detection.engine.checkpointer import Checkpointer
from detection.engine.classes import classes_comment, resolve_classes
from detection.engine.inference import evaluate
from detection.engine.launch import default_parser, relaunch_with_torchrun, run_tool, setup
from detection.engine.trainer import Trainer
from detection.fastpath import compile_parts
from detection.modeling import build_model
from detection.utils import comm
from detection.utils.io import write_text

logger = logging.getLogger("detection")

OUTPUTS = """Files written into OUTPUT_DIR (rank 0):
  config.yaml                  the resolved config (with the seed used when SEED < 0, the class
                               count from the data when NUM_CLASSES is 0, the class names on line 1)
  log.txt                      the log
  metrics.jsonl                one json object per logged iteration and per evaluation
  events.out.tfevents.*        the same for TensorBoard (only if tensorboard is installed)
  model_NNNNNNN.pth            a checkpoint every SOLVER.CHECKPOINT_PERIOD iterations
  model_final.pth              the last checkpoint (model, optimizer, schedule, iteration, RNG
                               states, config, class names and category ids)
  model_best.pth               the checkpoint of the best TEST.BEST_METRIC so far (iteration and value
                               in it under "best"; never what --resume reads)
  last_checkpoint              the name of the newest checkpoint (what --resume reads)
  curves.png                   training losses and mAP@0.5 against iteration, at the end
  eval/<dataset>/              per DATASETS.TEST, every TEST.EVAL_PERIOD iterations and at the end:
                               metrics.json, report.txt; detection also detections.json,
                               per_class_AP50.png, pr_curves.png (and <dataset>_gt_coco.json for
                               datasets without a COCO json of their own)"""


def main(argv=None) -> dict:
    parser = default_parser(__doc__, "MODEL.RESNETS.DEPTH 50 SOLVER.BASE_LR 0.01 SOLVER.MAX_ITER 90000 "
                                     "OUTPUT_DIR output/r50", epilog=OUTPUTS)
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUTPUT_DIR/last_checkpoint (model, optimizer, schedule, RNG states)")
    parser.add_argument("--eval-only", action="store_true", help="evaluate MODEL.WEIGHTS and exit")
    parser.add_argument("--num-gpus", type=int, default=1, metavar="N",
                        help="processes on this machine, started through torchrun")
    args = parser.parse_args(argv)
    if args.num_gpus > 1 and "RANK" not in os.environ:
        relaunch_with_torchrun(args.num_gpus)
    cfg = setup(args)
    cfg, class_names = _check_classes(cfg, args)
    if not args.eval_only:
        _check_best_metric(cfg)
    if comm.is_main_process():
        write_text(os.path.join(cfg.OUTPUT_DIR, "config.yaml"),
                   (classes_comment(class_names) if class_names else "") + cfg.dump())
    model = build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        # Training may start from part of a model (a loud warning); evaluating one is refused unless
        # MODEL.ALLOW_PARTIAL_WEIGHTS is set.
        load_weights(model, cfg.MODEL.WEIGHTS, cfg=cfg, allow_partial=None if args.eval_only else True)
    if args.eval_only:
        results = evaluate(cfg, model)
        logger.info("results: %s", json.dumps(_headline(results)))
        return results
    if cfg.MODEL.COMPILE:  # evaluations compile their own frozen copy (build_test_model)
        compile_parts(model, inference=False)
    info = get_dataset_info(cfg, cfg.DATASETS.TRAIN[0])
    trainer = Trainer(cfg, model, lambda start: build_train_loader(cfg, start_iter=start),
                      evaluate_fn=lambda m: evaluate(cfg, m),
                      extra_checkpoint_data={"class_names": list(info.class_names),
                                             "category_ids": list(info.category_ids)})
    trainer.resume_or_start(args.resume)
    trainer.train()
    return {}


def _check_classes(cfg, args):
    """Resolve a class count of 0 from the data and stop on any mismatch, before anything is built.

    Training: the training and test datasets must agree; MODEL.WEIGHTS may have other classes
    (fine-tuning), the checkpoint --resume continues from may not. --eval-only: the test datasets
    and MODEL.WEIGHTS must agree.
    """
    if args.eval_only:
        return resolve_classes(cfg, cfg.DATASETS.TEST, cfg.MODEL.WEIGHTS)
    cfg, names = resolve_classes(cfg, [*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST], cfg.MODEL.WEIGHTS, fine_tune=True)
    last = Checkpointer(cfg.OUTPUT_DIR, None).last_checkpoint() if args.resume else None
    if last:
        resolve_classes(cfg, cfg.DATASETS.TRAIN[:1], last)
    return cfg, names


def _check_best_metric(cfg) -> None:
    """TEST.BEST_METRIC must be a metric of the first test dataset's evaluator (checked before
    training); empty becomes that evaluator's headline (AP50, or loc_err_gt)."""
    kind = get_dataset_info(cfg, cfg.DATASETS.TEST[0]).evaluator_type if cfg.DATASETS.TEST else "coco"
    cfg.TEST.BEST_METRIC = cfg.TEST.BEST_METRIC or default_metric(kind)
    metric_mode(cfg.TEST.BEST_METRIC, cfg.TEST.BEST_METRIC_MODE)
    if not cfg.DATASETS.TEST:
        return
    if cfg.TEST.BEST_METRIC not in known_metrics(kind):
        raise ValueError(f"TEST.BEST_METRIC {cfg.TEST.BEST_METRIC!r} is not a metric of the {kind} evaluation of "
                         f"{cfg.DATASETS.TEST[0]}; available: {', '.join(known_metrics(kind))}")


def _headline(results: dict) -> dict:
    keys = ("AP50", "AP", "VOC07_mAP50", "loc_err_gt", "loc_err_top5")
    return {name: {k: m[k] for k in keys if k in m} for name, m in results.items()}


if __name__ == "__main__":
    run_tool(main)
