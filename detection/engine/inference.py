"""Run a model over a test loader and hand its outputs to an evaluator."""
from __future__ import annotations

import logging
import os

import torch

from detection.data import build_test_loader
from detection.evaluation import build_evaluator
from detection.modeling import build_test_model
from detection.utils.comm import get_world_size, is_main_process, unwrap_model
from detection.utils.progress import Progress

logger = logging.getLogger(__name__)


@torch.no_grad()
def inference_on_dataset(model, loader, evaluator, log_period: float = 10.0) -> dict:
    """Every batch of ``loader`` through ``model`` (eval mode); returns ``evaluator.evaluate()``.
    Progress in images/s: a bar on a terminal, a log line every ``log_period`` seconds elsewhere."""
    was_training = model.training
    model.eval()
    evaluator.reset()
    total = _num_images(loader)
    with Progress(total, "inference", unit="img", log_period_s=log_period, logger=logger,
                  enabled=is_main_process()) as progress:
        for batch in loader:
            outputs = model(batch)
            evaluator.process([x["image_id"] for x in batch], outputs)
            progress.update(len(batch))
    model.train(was_training)
    return evaluator.evaluate()


def _num_images(loader) -> int | None:
    """Images this process will see (its sampler's length), None if the loader cannot say."""
    sampler = getattr(getattr(loader, "loader", loader), "sampler", None)
    try:
        return len(sampler)
    except TypeError:
        return None


def eval_output_dir(output_dir: str, dataset_name: str) -> str:
    """Where the evaluation of ``dataset_name`` writes its files: OUTPUT_DIR/eval/<dataset>/."""
    return os.path.join(output_dir, "eval", dataset_name.replace("/", "_").replace(":", "_"))


def evaluate(cfg, model, plot: bool = True, **explain_options) -> dict:
    """Evaluate on each of ``DATASETS.TEST``; results in OUTPUT_DIR/eval/<dataset>/.

    Returns {dataset name: metrics}. Detection datasets get the COCO/VOC metrics (and, with
    ``plot``, their PNG plots), localization datasets the LOC errors. ``explain_options``
    (``iou_threshold``, ``score_thresh``) go to the detection evaluators' confusion matrix.
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
        out_dir = eval_output_dir(cfg.OUTPUT_DIR, name)
        evaluator = build_evaluator(info, records, out_dir, plot=plot, **explain_options)
        logger.info("evaluating on %s (%d images, %d process(es))", name, len(records), get_world_size())
        results[name] = inference_on_dataset(build_test_model(cfg, model), loader, evaluator)
    return results
