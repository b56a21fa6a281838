"""Run a model over a test loader and hand its outputs to an evaluator."""
from __future__ import annotations

import logging
import os
import time

import torch

from detection.data import build_test_loader
from detection.evaluation import build_evaluator
from detection.utils.comm import get_world_size, unwrap_model

logger = logging.getLogger(__name__)


@torch.no_grad()
def inference_on_dataset(model, loader, evaluator, log_period: int = 50) -> dict:
    """Every batch of ``loader`` through ``model`` (eval mode); returns ``evaluator.evaluate()``."""
    was_training = model.training
    model.eval()
    evaluator.reset()
    total = len(loader)
    start = time.perf_counter()
    for i, batch in enumerate(loader):
        outputs = model(batch)
        evaluator.process([x["image_id"] for x in batch], outputs)
        if (i + 1) % log_period == 0 or i + 1 == total:
            per_batch = (time.perf_counter() - start) / (i + 1)
            logger.info("inference %d/%d batches, %.3f s/batch", i + 1, total, per_batch)
    model.train(was_training)
    return evaluator.evaluate()


def evaluate(cfg, model, plot: bool = True) -> dict:
    """Evaluate on each of ``DATASETS.TEST``; results in OUTPUT_DIR/eval/<dataset>/.

    Returns {dataset name: metrics}. Detection datasets get the COCO/VOC metrics (and, with
    ``plot``, their PNG plots), localization datasets the LOC errors.
    """
    results = {}
    task = unwrap_model(model).task
    for name in cfg.DATASETS.TEST:
        loader, records, info = build_test_loader(cfg, name)
        dataset_task = "localization" if info.evaluator_type == "loc" else "detection"
        if dataset_task != task:
            raise ValueError(
                f"DATASETS.TEST {name!r} is a {dataset_task} dataset but the model "
                f"({cfg.MODEL.META_ARCHITECTURE}) is a {task} model: pick a {task} dataset, or "
                f"MODEL.META_ARCHITECTURE {'PCRLocalizer' if dataset_task == 'localization' else 'FasterRCNN'}")
        out_dir = os.path.join(cfg.OUTPUT_DIR, "eval", name.replace("/", "_").replace(":", "_"))
        evaluator = build_evaluator(info, records, out_dir, plot=plot)
        logger.info("evaluating on %s (%d images, %d process(es))", name, len(records), get_world_size())
        results[name] = inference_on_dataset(model, loader, evaluator)
    return results
