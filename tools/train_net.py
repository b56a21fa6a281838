#!/usr/bin/env python
"""Train (and evaluate) a detector.

    python tools/train_net.py --config configs/quickstart.yaml
    python tools/train_net.py --config configs/coco_r101.yaml --resume
    python tools/train_net.py --config configs/coco_r101.yaml --eval-only MODEL.WEIGHTS output/model_final.pth
    torchrun --nproc_per_node 8 tools/train_net.py --config configs/coco_r101.yaml
    python tools/train_net.py --config configs/coco_r101.yaml --num-gpus 8     # same, torchrun started for you
"""
import json
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detection.checkpoint import load_weights  # noqa: E402
from detection.data import build_train_loader, get_dataset_info  # noqa: E402
from detection.engine.best import known_metrics, metric_mode  # noqa: E402
from detection.engine.checkpointer import Checkpointer  # noqa: E402
from detection.engine.classes import classes_comment, resolve_classes  # noqa: E402
from detection.engine.inference import evaluate  # noqa: E402
from detection.engine.launch import default_parser, relaunch_with_torchrun, setup  # noqa: E402
from detection.engine.trainer import Trainer  # noqa: E402
from detection.modeling import build_model  # noqa: E402
from detection.utils import comm  # noqa: E402

logger = logging.getLogger("detection")


def main(argv=None) -> dict:
    parser = default_parser(__doc__)
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/last_checkpoint")
    parser.add_argument("--eval-only", action="store_true", help="evaluate MODEL.WEIGHTS and exit")
    parser.add_argument("--num-gpus", type=int, default=1, help="processes on this machine (started via torchrun)")
    args = parser.parse_args(argv)
    if args.num_gpus > 1 and "RANK" not in os.environ:
        relaunch_with_torchrun(args.num_gpus)
    cfg = setup(args)
    cfg, class_names = _check_classes(cfg, args)
    if not args.eval_only:
        _check_best_metric(cfg)
    if comm.is_main_process():
        os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
        with open(os.path.join(cfg.OUTPUT_DIR, "config.yaml"), "w") as f:
            f.write((classes_comment(class_names) if class_names else "") + cfg.dump())
    model = build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        load_weights(model, cfg.MODEL.WEIGHTS)
    if args.eval_only:
        results = evaluate(cfg, model)
        logger.info("results: %s", json.dumps(_headline(results)))
        return results
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
    """TEST.BEST_METRIC must be a metric of the first test dataset's evaluator (checked before training)."""
    metric_mode(cfg.TEST.BEST_METRIC, cfg.TEST.BEST_METRIC_MODE)
    if not cfg.DATASETS.TEST:
        return
    kind = get_dataset_info(cfg, cfg.DATASETS.TEST[0]).evaluator_type
    if cfg.TEST.BEST_METRIC not in known_metrics(kind):
        raise ValueError(f"TEST.BEST_METRIC {cfg.TEST.BEST_METRIC!r} is not a metric of the {kind} evaluation of "
                         f"{cfg.DATASETS.TEST[0]}; available: {', '.join(known_metrics(kind))}")


def _headline(results: dict) -> dict:
    keys = ("AP50", "AP", "VOC07_mAP50", "loc_err_gt", "loc_err_top5")
    return {name: {k: m[k] for k in keys if k in m} for name, m in results.items()}


if __name__ == "__main__":
    main()
