"""Lesion study (Veit et al. 2016, sections 4-5): delete residual blocks at test time.

Deleting a block replaces its forward ``y = relu(F(x) + s(x))`` by ``y = relu(s(x))``:

* identity shortcut (``s(x) = x``): ``y = relu(x) = x``. Our blocks apply the ReLU after the sum
  (the paper's layout), so "delete F" literally gives ``relu(x)``; this equals ``x`` because every
  block input is non-negative (the stem ends with ReLU + max-pool, every block with a ReLU, and
  RoIAlign/RoIPool of a non-negative map is non-negative). The lesioned block is the identity.
* projection shortcut (1x1 conv + norm, option B/C): ``y = relu(proj(x))``: only the residual
  branch is removed, the projection stays (the shapes must change). These blocks are reported
  separately (kind ``projection``): removing them also changes the representation's basis, which
  Veit et al. found much more harmful (their "downsampling" blocks).
* option-A zero-padded shortcut: ``y = relu(pad(subsample(x)))`` (kind ``zeropad``), also separate.

A plain network (``MODEL.RESNETS.RESIDUAL False``) has no skip, so there is nothing to "keep";
following Veit et al.'s comparison with VGG (removing a layer of a plain net removes the only
path) we replace a shape-preserving plain block by the identity ``y = x`` (kind ``plain``), and a
block that changes width/resolution by the parameter-free option-A map ``pad(subsample(x))``
(kind ``plain-reshape``: stride-s subsampling, extra channels zero), the only shape-compatible
mapping without parameters. ``plain-reshape`` blocks are reported separately, like projections.

Random multi-block deletion draws from the "pool" of blocks whose deletion is the identity
(``identity`` and ``plain`` kinds by default): for a residual net and the plain net of the same
depth and shortcut option these are the same positions, so the two curves compare like with like.
"""
from __future__ import annotations

import contextlib
import itertools
import logging
import math
import random
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from detection.modeling.backbone.resnet import ResidualBlock, ZeroPadShortcut

from .common import IDENTITY, PLAIN, block_channels, block_kind, paper_name, residual_blocks

logger = logging.getLogger(__name__)

POOL_KINDS = (IDENTITY, PLAIN)
_MISSING = object()


def lesion_forward(block: ResidualBlock) -> Callable[[torch.Tensor], torch.Tensor]:
    """The forward of ``block`` with its residual branch deleted (see the module docstring)."""
    if block.residual:
        shortcut = block.shortcut

        def forward(x):
            return F.relu(x if shortcut is None else shortcut(x))
        return forward
    cin, cout, stride = block_channels(block)
    if cin == cout and stride == 1:
        return lambda x: x
    pad = ZeroPadShortcut(cin, cout, stride)
    if cout < cin:
        raise ValueError(f"cannot delete a plain block that reduces channels ({cin} -> {cout})")
    return lambda x: pad(x)


@contextlib.contextmanager
def lesioned(model: nn.Module, names: Iterable[str]):
    """Temporarily delete the blocks ``names`` (as ``residual_blocks(model)`` names them).

    ``with lesioned(detector, ["backbone.res3.1", "roi_heads.res5.2"]): detector(batch)``.
    Yields {name: kind}. The original forwards are restored on exit, also after an exception.
    """
    blocks = dict(residual_blocks(model))
    names = list(dict.fromkeys(names))  # unique, in order
    unknown = [n for n in names if n not in blocks]
    if unknown:
        raise KeyError(f"not residual blocks of the model: {unknown}; blocks are {list(blocks)}")
    saved = []
    try:
        for n in names:
            b = blocks[n]
            saved.append((b, b.__dict__.get("forward", _MISSING)))
            # an instance attribute shadows the class's forward; nn.Module.__call__ uses self.forward
            object.__setattr__(b, "forward", lesion_forward(b))
        yield {n: block_kind(blocks[n]) for n in names}
    finally:
        for b, f in reversed(saved):
            if f is _MISSING:
                del b.__dict__["forward"]
            else:
                object.__setattr__(b, "forward", f)


def deletion_pool(model: nn.Module, include_reshaping: bool = False) -> list[str]:
    """Names of the blocks the random k-deletion draws from: identity / plain blocks (deleting
    them gives the identity), plus projection / zero-pad / plain-reshape blocks if
    ``include_reshaping``."""
    return [n for n, b in residual_blocks(model) if include_reshaping or block_kind(b) in POOL_KINDS]


def sample_subsets(pool: Sequence[str], k: int, draws: int, rng: random.Random) -> list[list[str]]:
    """``min(draws, C(n, k))`` distinct k-subsets of ``pool`` (in pool order)."""
    n = len(pool)
    total = math.comb(n, k)
    if total <= draws:
        return [list(c) for c in itertools.combinations(pool, k)]
    seen, out = set(), []
    while len(out) < draws:
        idx = tuple(sorted(rng.sample(range(n), k)))
        if idx not in seen:
            seen.add(idx)
            out.append([pool[i] for i in idx])
    return out


def lesion_study(model: nn.Module, evaluate_fn: Callable[[nn.Module], float], *, max_k: int | None = None,
                 draws: int = 5, seed: int = 0, include_reshaping: bool = False, single: bool = True,
                 log: Callable[[str], None] | None = None) -> dict:
    """Evaluate ``model`` intact, with each block deleted alone, and with k random blocks deleted.

    ``evaluate_fn(model) -> metric`` (mAP@0.5 for a detector, see ``common.DetectorAP50``).
    Returns a JSON-able dict::

        {"baseline": m, "num_blocks": n, "pool": [names],
         "single": [{"name", "paper_name", "kind", "metric", "drop"}, ...],   # every block
         "random": [{"k", "draws", "metrics": [...], "removed": [[names]], "mean", "std", "min", "max"}]}

    ``random`` has k = 0 (nothing deleted: the baseline) .. ``max_k`` (default: the pool size);
    the subsets are drawn with ``random.Random(seed)``, so two networks with the same block names
    get the same subsets.
    """
    log = log or logger.info
    model.eval()
    blocks = residual_blocks(model)
    kinds = {n: block_kind(b) for n, b in blocks}
    baseline = float(evaluate_fn(model))
    log(f"baseline: {baseline:.3f}")
    result = {"baseline": baseline, "num_blocks": len(blocks), "kinds": kinds, "single": [], "random": []}
    if single:
        for name, _ in blocks:
            with lesioned(model, [name]):
                m = float(evaluate_fn(model))
            result["single"].append({"name": name, "paper_name": paper_name(name), "kind": kinds[name],
                                     "metric": m, "drop": baseline - m})
            log(f"delete {name:<22s} ({kinds[name]}): {m:.3f}")
    pool = deletion_pool(model, include_reshaping)
    result["pool"] = pool
    max_k = len(pool) if max_k is None else min(max_k, len(pool))
    rng = random.Random(seed)
    result["random"].append({"k": 0, "draws": 1, "metrics": [baseline], "removed": [[]], "mean": baseline,
                             "std": 0.0, "min": baseline, "max": baseline})
    for k in range(1, max_k + 1):
        subsets = sample_subsets(pool, k, draws, rng)
        metrics = []
        for s in subsets:
            with lesioned(model, s):
                metrics.append(float(evaluate_fn(model)))
        t = torch.tensor(metrics, dtype=torch.float64)
        row = {"k": k, "draws": len(subsets), "metrics": metrics, "removed": subsets, "mean": float(t.mean()),
               "std": float(t.std(unbiased=False)), "min": float(t.min()), "max": float(t.max())}
        result["random"].append(row)
        log(f"delete {k} random block(s), {len(subsets)} draw(s): mean {row['mean']:.3f} "
            f"(min {row['min']:.3f}, max {row['max']:.3f})")
    return result


def single_lesion_table(result: dict, label: str = "") -> tuple[list[str], list[list]]:
    """(headers, rows) of the per-block table of a ``lesion_study`` result."""
    headers = ["block", "paper", "kind", "mAP@0.5", "drop"]
    rows = [[r["name"], r["paper_name"], r["kind"], f"{r['metric']:.2f}", f"{r['drop']:+.2f}"]
            for r in result["single"]]
    return headers, rows


def random_lesion_table(results: dict[str, dict]) -> tuple[list[str], list[list]]:
    """(headers, rows): k, then mean +- std (draws) for each network of ``{label: result}``."""
    labels = list(results)
    ks = sorted({r["k"] for res in results.values() for r in res["random"]})
    headers = ["k deleted"] + [f"{lab} mAP@0.5 (mean +- std, draws)" for lab in labels]
    rows = []
    for k in ks:
        row = [k]
        for lab in labels:
            r = next((r for r in results[lab]["random"] if r["k"] == k), None)
            row.append("" if r is None else f"{r['mean']:.2f} +- {r['std']:.2f} ({r['draws']})")
        rows.append(row)
    return headers, rows
