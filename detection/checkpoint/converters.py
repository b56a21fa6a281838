"""Checkpoint formats -> a flat ``{name: tensor}`` in our naming, plus what the weights expect as input.

Our naming is Detectron2's: a ResNet is ``stem.conv1.weight``, ``stem.conv1.norm.{weight,bias,
running_mean,running_var}``, ``res2.0.conv1.weight``, ``res2.0.conv1.norm.*``, ... ``res2.0.shortcut``,
``linear.{weight,bias}`` (ImageNet head); the C4 detector puts the trunk under ``backbone.``, res5 under
``roi_heads.res5.``, the RPN under ``rpn.head.`` and the predictor under ``roi_heads.box_predictor.``.

Sources (detected from the key names, not the file extension):

* ``torchvision``: ImageNet ResNet state dicts (``conv1``, ``bn1``, ``layer1..4``, ``fc``). RGB input,
  ImageNet mean/std, stride in the 3x3 conv.
* ``caffe2``: MSRA / Detectron pickles (``conv1_w``, ``res_conv1_bn_s``, ``res2_0_branch2a_w``, ...), with
  BN folded into a scale ``s`` and bias ``b``: loaded as a frozen affine (weight=s, bias=b,
  running_mean=0, running_var=1-eps, so ``s * (x - 0) / sqrt(1 - eps + eps) + b`` is exact). BGR input,
  MSRA means, std 1, stride in the 1x1 conv.
* ``detectron2``: ``{"model": ..., "__author__": ..., "matching_heuristics": ...}``; names are ours except
  ``proposal_generator.rpn_head.`` (-> ``rpn.head.``). BGR, Detectron2 means, stride in the 1x1 conv;
  its torchvision-converted ImageNet pickles (``__author__: torchvision``) are RGB/stride in 3x3.
* ``ours``: our own training checkpoints, ``{"model": state_dict, ...}``.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import yaml

from detection.modeling.backbone.resnet import resnet_spec

from .formats import (DEPRECATED_PIXEL_KEYS, format_floats, sample_names, strip_prefix, split_tensors, convert_caffe2,
                      convert_detectron2, convert_torchvision)

__all__ = ["Checkpoint", "CheckpointInfo", "INPUT_HINTS", "convert_caffe2", "convert_checkpoint",
           "convert_detectron2", "convert_torchvision", "detect_format", "find_state_dict"]

# What each family of weights expects as input, in our 0..255 pipeline.
INPUT_HINTS = {
    "torchvision": dict(input_format="RGB", pixel_mean=(123.675, 116.28, 103.53), pixel_std=(58.395, 57.12, 57.375),
                        stride_in_1x1=False),
    "caffe2": dict(input_format="BGR", pixel_mean=(102.98, 115.95, 122.77), pixel_std=(1.0, 1.0, 1.0),
                   stride_in_1x1=True),
    "detectron2": dict(input_format="BGR", pixel_mean=(103.53, 116.28, 123.675), pixel_std=(1.0, 1.0, 1.0),
                       stride_in_1x1=True),
}
METADATA_KEYS = ("class_names", "category_ids")  # what the trainer saves beside the weights


@dataclass
class CheckpointInfo:
    """Where the weights came from and what input they expect (None: unknown)."""

    path: str
    source: str  # torchvision | caffe2 | detectron2 | ours | unknown
    input_format: str | None = None
    pixel_mean: tuple[float, ...] | None = None
    pixel_std: tuple[float, ...] | None = None
    stride_in_1x1: bool | None = None
    notes: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # source entries not converted (optimizer state, ...)
    metadata: dict = field(default_factory=dict)  # ours: class_names, category_ids saved by the trainer

    def describe(self) -> str:
        parts = [self.source]
        if self.input_format:
            parts.append(f"{self.input_format} input")
        if self.pixel_mean is not None:
            parts.append(f"mean {format_floats(self.pixel_mean)}")
        if self.pixel_std is not None:
            parts.append(f"std {format_floats(self.pixel_std)}")
        if self.stride_in_1x1 is not None:
            parts.append("stride in the 1x1 conv" if self.stride_in_1x1 else "stride in the 3x3 conv")
        return ", ".join(parts)

    def config_opts(self) -> list[str]:
        """``KEY VALUE`` pairs for ``load_config(path, opts)`` that match these weights."""
        opts: list[str] = []
        if self.input_format:
            opts += ["INPUT.FORMAT", self.input_format]
        if self.pixel_mean is not None:
            opts += ["MODEL.PIXEL_MEAN", str([float(v) for v in self.pixel_mean])]
        if self.pixel_std is not None:
            opts += ["MODEL.PIXEL_STD", str([float(v) for v in self.pixel_std])]
        if self.stride_in_1x1 is not None:
            opts += ["MODEL.RESNETS.STRIDE_IN_1X1", str(self.stride_in_1x1)]
        return opts

    def config_mismatches(self, cfg) -> list[str]:
        """Settings of ``cfg`` that differ from what these weights expect (one readable line each)."""
        out = []
        where = f"weights {self.path} ({self.source})"
        if self.input_format and cfg.INPUT.FORMAT != self.input_format:
            out.append(f"{where} expect {self.input_format} input; INPUT.FORMAT is {cfg.INPUT.FORMAT}")
        for key, want in (("PIXEL_MEAN", self.pixel_mean), ("PIXEL_STD", self.pixel_std)):
            have = getattr(cfg.MODEL, key)
            if want is not None and (len(have) != len(want) or any(abs(a - b) > 0.5 for a, b in zip(have, want))):
                out.append(f"{where} expect MODEL.{key} {format_floats(want)}; the config has {format_floats(have)}")
        if self.stride_in_1x1 is not None and cfg.MODEL.RESNETS.STRIDE_IN_1X1 != self.stride_in_1x1 \
                and _is_bottleneck(cfg):
            out.append(f"{where} were trained with the stride in the {'1x1' if self.stride_in_1x1 else '3x3'} conv; "
                       f"set MODEL.RESNETS.STRIDE_IN_1X1 {self.stride_in_1x1}")
        return out


@dataclass
class Checkpoint:
    """Converted weights: ``state_dict`` in our naming (CPU tensors), and ``info``."""

    state_dict: dict[str, torch.Tensor]
    info: CheckpointInfo


def _is_bottleneck(cfg) -> bool:
    try:
        r = cfg.MODEL.RESNETS
        return resnet_spec(r.DEPTH, r.STAGE_BLOCKS, r.BLOCK)[0] == "bottleneck"
    except Exception:  # a config the ResNet builder would reject anyway
        return True


# --------------------------------------------------------------------------------------------- detection
_TV_KEY = re.compile(r"^layer[1-4]\.\d+\.")
_C2_KEY = re.compile(r"^(res\d+_\d+_branch|res_conv1_bn_|conv1_w$|fc1000_)")
_STATE_KEYS = ("model", "state_dict", "model_state", "blobs")


def find_state_dict(obj: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the weights mapping, the top-level mapping) of a loaded checkpoint object.

    Weights may sit at the top or under ``model`` / ``state_dict`` / ``model_state`` / ``blobs``.
    """
    if not isinstance(obj, Mapping):
        raise TypeError(f"expected a dict of weights, got {type(obj).__name__}")
    top = dict(obj)
    for key in _STATE_KEYS:
        inner = top.get(key)
        if isinstance(inner, Mapping) and inner and any(isinstance(v, (torch.Tensor, np.ndarray)) for v in inner.values()):
            return {str(k): v for k, v in inner.items()}, top
    return {str(k): v for k, v in top.items()}, top


def detect_format(state: Mapping[str, Any], top: Mapping[str, Any] | None = None) -> str:
    """``torchvision`` | ``caffe2`` | ``detectron2`` | ``ours`` | ``unknown``, from the key names."""
    top = top if top is not None else {}
    keys = list(state)
    # the raw caffe2 / torchvision names first: they may come inside a Detectron2-style {"model": ...} wrapper
    if any(_C2_KEY.match(k) for k in keys):
        return "caffe2"
    if any(_TV_KEY.match(k) for k in keys) or ("conv1.weight" in state and "bn1.weight" in state):
        return "torchvision"
    if "__author__" in top or "matching_heuristics" in top or any(k.startswith("proposal_generator.") for k in keys):
        return "detectron2"
    if any(re.match(r"^(backbone\.|roi_heads\.|rpn\.head\.|stem\.|res[2-5]\.)", k) for k in keys):
        return "ours"
    return "unknown"


# --------------------------------------------------------------------------------------------- dispatch
def _hints_from_cfg(cfg: Any) -> dict[str, Any]:
    """Input hints from a config stored in our checkpoint (a dict or a YAML string), best effort."""
    if isinstance(cfg, str):
        try:
            cfg = yaml.safe_load(cfg)
        except Exception:
            return {}
    if not isinstance(cfg, Mapping):
        return {}
    hints: dict[str, Any] = {}
    model, inp = cfg.get("MODEL") or {}, cfg.get("INPUT") or {}
    if isinstance(inp, Mapping) and isinstance(inp.get("FORMAT"), str):
        hints["input_format"] = inp["FORMAT"]
    if isinstance(model, Mapping):
        for key, attr in (("PIXEL_MEAN", "pixel_mean"), ("PIXEL_STD", "pixel_std")):
            if isinstance(model.get(key), (list, tuple)):
                hints[attr] = tuple(float(v) for v in model[key])
        resnets = model.get("RESNETS") or {}
        if isinstance(resnets, Mapping) and isinstance(resnets.get("STRIDE_IN_1X1"), bool):
            hints["stride_in_1x1"] = resnets["STRIDE_IN_1X1"]
    return hints


# Our own names that changed: the localizer's head became the shared AnchorHead (0.2).
_LEGACY_RENAMES = (("head.class_logits.", "head.objectness_logits."), ("head.class_deltas.", "head.anchor_deltas."))


def rename_legacy(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], int]:
    """Our own checkpoints' old tensor names -> today's, and how many were renamed."""
    out, renamed = {}, 0
    for name, value in state.items():
        for old, new in _LEGACY_RENAMES:
            if name.startswith(old):
                name, renamed = new + name[len(old):], renamed + 1
        out[name] = value
    return out, renamed


def convert_checkpoint(obj: Any, path: str = "<memory>") -> Checkpoint:
    """A loaded checkpoint object (dict of tensors/arrays, possibly nested) -> :class:`Checkpoint`."""
    state, top = find_state_dict(obj)
    state = strip_prefix(state, "module.")  # DistributedDataParallel
    fmt = detect_format(state, top)
    tensors, non_tensor = split_tensors(state) if fmt != "caffe2" else (dict(state), [])
    notes: list[str] = []
    hints: dict[str, Any] = {}
    if fmt == "torchvision":
        converted, ignored, notes = convert_torchvision(tensors)
        hints = INPUT_HINTS["torchvision"]
    elif fmt == "caffe2":
        converted, ignored, notes = convert_caffe2(tensors)
        hints = INPUT_HINTS["caffe2"]
    elif fmt == "detectron2":
        author = top.get("__author__")
        converted, ignored, notes = convert_detectron2(tensors)
        hints = INPUT_HINTS["torchvision" if author == "torchvision" else "detectron2"]
        if isinstance(author, str):
            notes.insert(0, f"Detectron2 checkpoint by {author!r}")
    else:
        converted, ignored = tensors, []
        hints = _hints_from_cfg(top.get("cfg", top.get("config")))
        if fmt == "ours":
            converted, renamed = rename_legacy(converted)
            if renamed:
                notes.append(f"renamed {renamed} tensors of the 0.1 localizer head (head.class_logits/class_deltas "
                             "-> head.objectness_logits/anchor_deltas)")
            pixel = [k for k in converted if k.rsplit(".", 1)[-1] in DEPRECATED_PIXEL_KEYS]
            if pixel:
                notes.append(f"file has {', '.join(pixel)}: loaded where the model keeps them as state")
    if non_tensor:
        notes.append(f"ignored {len(non_tensor)} non-tensor entries of the weights dict: {sample_names(non_tensor)}")
    metadata = {k: top[k] for k in METADATA_KEYS if isinstance(top, Mapping) and isinstance(top.get(k), list)}
    info = CheckpointInfo(path=str(path), source=fmt, notes=notes, ignored=list(ignored) + non_tensor,
                          metadata=metadata, **hints)
    return Checkpoint(state_dict=converted, info=info)
