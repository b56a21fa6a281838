"""Checks on what a load would leave behind: ResNet tensors left as initialised, and non-finite values.

A checkpoint that fits only part of the model's ResNet (an R50 file in an R101 model, GN weights in a
FrozenBN model) leaves those tensors random. That is the normal case for nothing but the heads: the RPN
and box predictor of a backbone-only file, or a predictor with another class count when fine-tuning.
So only the trunk (``stem``, ``res2``..``res5``) is counted, and the likely cause is read from the
names and shapes that did not fit.
"""
from __future__ import annotations

import logging
import re

import torch

from .errors import NonFiniteWeightsError, PartialWeightsError
from .report import LoadReport

__all__ = ["MAX_UNFIT_RESNET_FRACTION", "check_finite", "check_partial", "likely_cause", "unfit_resnet_tensors"]

# More than this fraction of the model's ResNet tensors missing from the file (or of other shapes)
# makes a load partial: training warns, evaluation and the demo refuse (MODEL.ALLOW_PARTIAL_WEIGHTS).
MAX_UNFIT_RESNET_FRACTION = 0.01
_RESNET_RE = re.compile(r"(?:^|\.)(stem|res[2-5])\.(?:(\d+)\.)?(.*)$")


def _resnet_part(name: str) -> tuple[str, int | None, str] | None:
    """(stage, block index or None, rest) for a ResNet tensor name, else None."""
    m = _RESNET_RE.search(name)
    return (m[1], int(m[2]) if m[2] is not None else None, m[3]) if m else None


def unfit_resnet_tensors(report: LoadReport) -> tuple[list[str], int]:
    """The model's ResNet tensors not loaded (missing or of another shape), and how many it has."""
    mismatched = [n for n, _, _ in report.shape_mismatch]
    model_names = report.loaded + report.missing + mismatched
    resnet = [n for n in model_names if _resnet_part(n)]
    return [n for n in report.missing + mismatched if _resnet_part(n)], len(resnet)


def _blocks(names) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for n in names:
        p = _resnet_part(n)
        if p and p[1] is not None:
            out.setdefault(p[0], set()).add(p[1])
    return out


def likely_cause(report: LoadReport) -> str:
    """What differs between the file's ResNet and the model's: depth, width, norm, shortcut, block."""
    mismatched = [(n, f, m) for n, f, m in report.shape_mismatch if _resnet_part(n)]
    missing = [n for n in report.missing if _resnet_part(n)]
    unexpected = [n for n in report.unexpected if _resnet_part(n)]
    in_model = _blocks(report.loaded + report.missing + [n for n, _, _ in report.shape_mismatch])
    in_file = _blocks(report.loaded + report.unexpected + [n for n, _, _ in report.shape_mismatch])
    causes = []
    stages = [s for s in sorted(in_model.keys() | in_file.keys())
              if s in in_file and len(in_model.get(s, ())) != len(in_file[s])]
    if stages:
        counts = ", ".join(f"{s} {len(in_file[s])} vs {len(in_model.get(s, ()))}" for s in stages)
        causes.append(f"depth: blocks per stage in the file vs the model: {counts} "
                      "(MODEL.RESNETS.DEPTH / STAGE_BLOCKS)")
    leaves = {n.rsplit(".", 1)[-1] for n in missing + unexpected}
    if leaves & {"running_mean", "running_var"}:
        has, lacks = ("model", "file") if any(n.endswith("running_mean") for n in missing) else ("file", "model")
        causes.append(f"norm: the {has} has BN running statistics that the {lacks} lacks (MODEL.RESNETS.NORM: "
                      "FrozenBN/BN vs GN)")
    if any(n.endswith(".shortcut.weight") for n in missing + unexpected):
        causes.append("shortcut: projection shortcuts in one and not the other (MODEL.RESNETS.SHORTCUT, RESIDUAL)")
    if any(n.endswith(".conv3.weight") for n in missing + unexpected):
        causes.append("block type: bottleneck blocks (conv3) in one, basic in the other (MODEL.RESNETS.BLOCK)")
    if mismatched:
        name, fshape, mshape = mismatched[0]
        causes.append(f"width: {len(mismatched)} tensors have other shapes, e.g. {name} file {fshape} model "
                      f"{mshape} (MODEL.RESNETS.WIDTH_PER_GROUP, RES2_OUT_CHANNELS, STEM_OUT_CHANNELS, or "
                      "basic vs bottleneck blocks)")
    if not causes:
        causes.append("the file's ResNet is named or built differently from the model's (MODEL.RESNETS.*)")
    return "; ".join(causes)


def check_finite(path: str, named: list[tuple[str, torch.Tensor]]) -> None:
    """Raise :class:`NonFiniteWeightsError` naming the first tensor of ``named`` with NaN or inf values."""
    bad = []
    for name, value in named:
        if value.is_floating_point() or value.is_complex():
            count = int((~torch.isfinite(value)).sum())
            if count:
                bad.append((name, count, value.numel()))
    if bad:
        name, count, size = bad[0]
        raise NonFiniteWeightsError(
            f"checkpoint {path}: tensor {name} holds {count} NaN/inf values of {size}"
            + (f" ({len(bad)} tensors in all hold some)" if len(bad) > 1 else "")
            + "; the file is damaged or was saved from a diverged run")


def check_partial(report: LoadReport, allow_partial: bool, logger: logging.Logger) -> None:
    """Name the ResNet tensors the file leaves as initialised, and why; refuse unless allowed."""
    unfit, total = unfit_resnet_tensors(report)
    if not unfit:
        return
    text = (f"{len(unfit)} of the model's {total} ResNet tensors are not in {report.path} or have other shapes, "
            f"and stay as initialised (e.g. {unfit[0]}). Likely cause: {likely_cause(report)}")
    if len(unfit) <= MAX_UNFIT_RESNET_FRACTION * total:
        report.warnings.append(text)
        return
    if not allow_partial:
        raise PartialWeightsError(
            f"partial weights: {text}. Refusing to run a model whose ResNet is partly random; fix the config or "
            "the file, or set MODEL.ALLOW_PARTIAL_WEIGHTS True to go on anyway")
    report.warnings.insert(0, f"PARTIAL WEIGHTS: {text}")
    logger.warning("PARTIAL WEIGHTS: %s. Going on: these tensors start from their random initialisation", text)
