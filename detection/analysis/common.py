"""Shared helpers of the analysis tools: naming residual blocks, classifying them, loading a model,
collecting test batches and a cached mAP@0.5 evaluator."""
from __future__ import annotations

import logging
import re
import tempfile

import torch
import torch.nn as nn

from detection.checkpoint import load_weights
from detection.data import build_test_loader
from detection.data.coco import gt_json_for
from detection.engine.inference import inference_on_dataset
from detection.evaluation.evaluator import DetectionEvaluator
from detection.modeling import build_model
from detection.modeling.backbone.resnet import BottleneckBlock, ResidualBlock, ZeroPadShortcut
from detection.structures import ImageList
from detection.utils.comm import unwrap_model

logger = logging.getLogger(__name__)

# Kinds of block (see ``block_kind``).
IDENTITY, PROJECTION, ZEROPAD, PLAIN, PLAIN_RESHAPE = "identity", "projection", "zeropad", "plain", "plain-reshape"


def residual_blocks(model: nn.Module) -> list[tuple[str, ResidualBlock]]:
    """Every residual (or plain) block of ``model`` in forward order, with its module name.

    For a FasterRCNN: ``backbone.res2.0`` .. ``backbone.res4.N`` (the per-image trunk), then
    ``roi_heads.res5.0`` .. (the per-RoI head). For a bare ResNet: ``res2.0`` ... For an
    ``nn.Sequential`` stage: ``0``, ``1``, ...
    """
    return [(name, m) for name, m in unwrap_model(model).named_modules() if isinstance(m, ResidualBlock)]


def block_channels(block: ResidualBlock) -> tuple[int, int, int]:
    """(in_channels, out_channels, stride) of a block."""
    last = block.conv3 if isinstance(block, BottleneckBlock) else block.conv2
    convs = [block.conv1, block.conv2] + ([block.conv3] if isinstance(block, BottleneckBlock) else [])
    stride = 1
    for c in convs:
        stride *= c.stride[0]
    return block.conv1.in_channels, last.out_channels, stride


def changes_shape(block: ResidualBlock) -> bool:
    cin, cout, stride = block_channels(block)
    return cin != cout or stride != 1


def block_kind(block: ResidualBlock) -> str:
    """``identity`` (residual, identity shortcut), ``projection`` (residual, 1x1 conv shortcut),
    ``zeropad`` (residual, option-A zero-padded shortcut), ``plain`` (no shortcut, shape kept),
    ``plain-reshape`` (no shortcut, the block changes width or resolution)."""
    if not block.residual:
        return PLAIN_RESHAPE if changes_shape(block) else PLAIN
    if block.shortcut is None:
        return IDENTITY
    if isinstance(block.shortcut, ZeroPadShortcut):
        return ZEROPAD
    return PROJECTION


def paper_name(name: str) -> str:
    """The ResNet paper's layer name: ``backbone.res3.1`` -> ``conv3_2``, ``res4`` -> ``conv4_x``,
    ``stem`` -> ``conv1``; other names are returned as they are."""
    m = re.search(r"(?:^|\.)res([2-5])(?:\.(\d+))?(?:\.|$)", name)
    if m:
        stage, idx = m.group(1), m.group(2)
        tail = name[m.end():]
        base = f"conv{stage}_{int(idx) + 1}" if idx is not None else f"conv{stage}_x"
        return base + ("." + tail if tail else "")
    if name == "linear" or name.endswith(".linear"):
        return "fc"
    if re.search(r"(?:^|\.)stem(?:\.|$)", name):
        return "conv1" if name.endswith("stem") else "conv1." + name.split("stem.", 1)[1]
    return name


def is_detector(model: nn.Module) -> bool:
    model = unwrap_model(model)
    return hasattr(model, "backbone") and hasattr(model, "roi_heads") and hasattr(model, "rpn")


def load_model(cfg, weights: str | None = None) -> nn.Module:
    """``build_model(cfg)`` with ``weights`` (or ``cfg.MODEL.WEIGHTS``) loaded, in eval mode."""
    model = build_model(cfg)
    path = weights if weights is not None else cfg.MODEL.WEIGHTS
    if path:
        load_weights(model, path, cfg=cfg)  # partial weights refused unless MODEL.ALLOW_PARTIAL_WEIGHTS
    else:
        logger.warning("no weights given: the model is randomly initialised")
    return model.eval()


def test_batches(cfg, num_images: int | None = None, dataset: str | None = None):
    """(batches, records, info) for the first ``num_images`` images (all if None) of ``dataset``
    (default: ``DATASETS.TEST[0]``). Batches are decoded once and kept in memory, so repeated
    evaluations (one per lesion) do not decode the images again."""
    name = dataset or cfg.DATASETS.TEST[0]
    loader, records, info = build_test_loader(cfg, name)
    batches, seen = [], 0
    for batch in loader:
        if num_images is not None and seen >= num_images:
            break
        if num_images is not None:
            batch = batch[: num_images - seen]
        batches.append(batch)
        seen += len(batch)
    return batches, records, info


class DetectorAP50:
    """``evaluator(model) -> mAP@0.5 (%)`` on a fixed set of test images, decoded once.

    The same metric as ``detection.engine.inference.evaluate`` (its ``AP50``: COCOeval at IoU 0.5,
    over the processed images); ``last_metrics`` holds the whole metrics dict of the last call.
    """

    def __init__(self, cfg, num_images: int | None = None, dataset: str | None = None, gt_dir: str | None = None):
        self.cfg = cfg
        self.batches, self.records, self.info = test_batches(cfg, num_images, dataset)
        self.num_images = sum(len(b) for b in self.batches)
        # datasets without a json on disk (VOC) get one written from their records
        json_file = self.info.json_file or gt_json_for(
            self.info, self.records, gt_dir or tempfile.mkdtemp(prefix="analysis_gt_"))
        self.evaluator = DetectionEvaluator(json_file, self.info.class_names, self.info.category_ids,
                                            output_dir=None, plot=False, verbose=False)
        self.last_metrics: dict = {}

    def __call__(self, model: nn.Module) -> float:
        ev_logger = logging.getLogger("detection.evaluation")
        level = ev_logger.level
        ev_logger.setLevel(logging.ERROR)  # "evaluating k of n images" on every call
        try:
            self.last_metrics = inference_on_dataset(model, self.batches, self.evaluator, log_period=10 ** 9)
        finally:
            ev_logger.setLevel(level)
        ap = self.last_metrics.get("AP50", float("nan"))
        return float(ap)


def trunk_input(model: nn.Module, batch: list[dict]) -> torch.Tensor:
    """A detector's normalised, padded image tensor for ``batch`` (what its trunk sees)."""
    model = unwrap_model(model)
    return ImageList.from_tensors(model.normalize(batch), model.size_divisibility).tensor


def format_table(headers: list[str], rows: list[list], align: str | None = None) -> str:
    """A plain-text table; ``align`` is a string of ``l``/``r`` per column (default: first left)."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or ("l" + "r" * (len(headers) - 1))
    lines = []
    for j, r in enumerate(cells):
        lines.append("  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(r, widths, align)))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def fmt_int(n) -> str:
    return f"{int(n):,}"

