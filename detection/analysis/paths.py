"""Paths through a residual network (Veit et al. 2016, section 6: "the importance of short paths").

Unrolled, a chain of n residual blocks ``y = relu(F(x) + s(x))`` is a collection of 2^n paths: at
each block a path goes either through the residual branch F or through the skip s. A path's
length is the number of branches it goes through; with every choice equally likely the lengths
follow Binomial(n, 1/2) (``path_length_distribution``).

Gradient along paths of length k (``path_gradients``), as Veit et al. measure it: a batch is fed
forward through the whole network once (every block computes its normal output). In the backward
pass k blocks are sampled; through those the gradient is propagated only through the residual
branch, through the n - k others only through the skip. The ReLU after each sum belongs to both
paths (its mask is that of the normal forward). Concretely, with ``x_i`` the input of block i,
``z_i = F_i(x_i) + s_i(x_i)`` and ``g`` the gradient arriving at the block's output:

    g <- g * 1[z_i > 0];  g <- J_F_i(x_i)^T g  (block i sampled)   or   J_s_i(x_i)^T g  (not sampled)

(``J_s = I`` for identity shortcuts; projection and zero-pad shortcuts count as skips). Summing
this over all 2^n subsets gives exactly the ordinary gradient (the backward is linear), which the
tests check. The gradient magnitude is the norm of the gradient reaching the chain's input (the
stem's output), per image, averaged over the batch and over ``draws`` sampled subsets per k; the
loss is a fixed random projection ``sum(R * output)`` (R ~ N(0, 1), seeded).

The share of the total gradient carried by paths of length k ("effective paths") is
``C(n, k) * g(k) / sum_j C(n, j) * g(j)``: many paths times small per-path gradient. In Veit et
al.'s 54-block network almost all of it comes from paths of length 5..17, far shorter than the
typical path (27).

For a FasterRCNN the chain is the trunk's blocks (res2..res4) followed by the res5 head's blocks
applied directly to the res4 map (RoI pooling, a fixed linear resampling common to every path, is
left out); models are evaluated with their norms in eval mode (fixed statistics).
"""
from __future__ import annotations

import math
import random
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from detection.utils.comm import unwrap_model

from .common import is_detector, residual_blocks, trunk_input
from .lesion import sample_subsets


def path_length_distribution(n: int) -> list[dict]:
    """``[{"k", "count": C(n, k), "prob": C(n, k) / 2^n}]`` for k = 0..n."""
    total = 2 ** n
    return [{"k": k, "count": math.comb(n, k), "prob": math.comb(n, k) / total} for k in range(n + 1)]


def block_chain(model: nn.Module) -> tuple[nn.Module | None, list[tuple[str, nn.Module]]]:
    """(stem or None, [(name, block)]) of a FasterRCNN, a ResNet or a sequence of blocks."""
    model = unwrap_model(model)
    if is_detector(model):
        return model.backbone.stem, ([(f"backbone.{n}", b) for n, b in residual_blocks(model.backbone)]
                                     + [(f"roi_heads.res5.{n}", b) for n, b in residual_blocks(model.roi_heads.res5)])
    return getattr(model, "stem", None), residual_blocks(model)


class PathForward:
    """One normal forward through ``blocks`` from ``x0``, kept for any number of path backwards."""

    def __init__(self, blocks: Sequence[nn.Module], x0: torch.Tensor):
        self.xs, self.branches, self.skips, self.masks = [], [], [], []
        x = x0.detach()
        with torch.enable_grad():
            for b in blocks:
                if not getattr(b, "residual", False):
                    raise ValueError("paths are defined for residual blocks only (this block has no shortcut)")
                xi = x.detach().requires_grad_(True)
                f = b.branch(xi)
                s = xi if b.shortcut is None else b.shortcut(xi)
                z = f + s
                self.xs.append(xi)
                self.branches.append(f)
                self.skips.append(None if b.shortcut is None else s)
                self.masks.append((z > 0).to(z.dtype))
                x = F.relu(z)
        self.output = x.detach()
        self.n = len(self.xs)

    def backward(self, grad_output: torch.Tensor, through_branch: Sequence[int] | set[int]) -> torch.Tensor:
        """The gradient at the chain's input of the paths that take the residual branch at the blocks
        ``through_branch`` (indices) and the skip everywhere else."""
        chosen = set(through_branch)
        g = grad_output
        for i in reversed(range(self.n)):
            g = g * self.masks[i]
            if i in chosen:
                g = torch.autograd.grad(self.branches[i], self.xs[i], g, retain_graph=True)[0]
            elif self.skips[i] is not None:
                g = torch.autograd.grad(self.skips[i], self.xs[i], g, retain_graph=True)[0]
        return g

    def full_backward(self, grad_output: torch.Tensor) -> torch.Tensor:
        """The ordinary gradient (every path), for comparison."""
        g = grad_output
        for i in reversed(range(self.n)):
            g = g * self.masks[i]
            outs = [self.branches[i]] + ([self.skips[i]] if self.skips[i] is not None else [])
            gs = torch.autograd.grad(outs, self.xs[i], [g] * len(outs), retain_graph=True)[0]
            g = gs if self.skips[i] is not None else gs + g
        return g


def random_projection(shape, seed: int = 0, device=None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g).to(device)


def gradient_norm(g: torch.Tensor) -> float:
    """Per-sample L2 norm of a gradient, averaged over the batch."""
    return float(g.flatten(1).norm(dim=1).mean())


@torch.no_grad()
def path_gradients(blocks: Sequence[nn.Module], x0: torch.Tensor, *, max_k: int | None = None, draws: int = 10,
                   seed: int = 0, projection_seed: int = 0) -> list[dict]:
    """Gradient magnitude at the input along paths of length k = 0..max_k (default n).

    Returns ``[{"k", "draws", "magnitudes": [...], "mean", "std"}]`` (per k up to ``draws``
    distinct k-subsets, ``random.Random(seed)``).
    """
    fwd = PathForward(blocks, x0)
    n = fwd.n
    proj = random_projection(fwd.output.shape, projection_seed, fwd.output.device)
    rng = random.Random(seed)
    max_k = n if max_k is None else min(max_k, n)
    out = []
    for k in range(max_k + 1):
        subsets = sample_subsets(list(range(n)), k, draws, rng)
        mags = [gradient_norm(fwd.backward(proj, s)) for s in subsets]
        t = torch.tensor(mags, dtype=torch.float64)
        out.append({"k": k, "draws": len(subsets), "magnitudes": mags, "mean": float(t.mean()),
                    "std": float(t.std(unbiased=False))})
    return out


def effective_paths(distribution: list[dict], gradients: list[dict], mass: float = 0.9) -> dict:
    """Share of the total gradient per path length: ``count(k) * mean gradient(k)``, normalised
    over the measured k. Also the mode and the shortest k-interval around it holding ``mass``."""
    count = {d["k"]: d["count"] for d in distribution}
    weights = {g["k"]: count[g["k"]] * g["mean"] for g in gradients}
    total = sum(weights.values()) or 1.0
    share = [{"k": k, "share": w / total} for k, w in sorted(weights.items())]
    mode = max(share, key=lambda s: s["share"])["k"] if share else 0
    lo = hi = mode
    acc = dict((s["k"], s["share"]) for s in share)
    got = acc.get(mode, 0.0)
    while got < mass and (lo - 1 in acc or hi + 1 in acc):
        left, right = acc.get(lo - 1, -1.0), acc.get(hi + 1, -1.0)
        if left >= right:
            lo -= 1
            got += left
        else:
            hi += 1
            got += right
    return {"share": share, "mode": mode, "interval": [lo, hi], "interval_mass": got,
            "mean_length": sum(s["k"] * s["share"] for s in share)}


@torch.no_grad()
def chain_input(model: nn.Module, batch) -> torch.Tensor:
    """The input of the first block: the stem's output on ``batch`` (image dicts for a detector,
    a (B, 3, H, W) tensor otherwise)."""
    model = unwrap_model(model)
    stem, _ = block_chain(model)
    x = trunk_input(model, batch) if is_detector(model) else batch
    return stem(x) if stem is not None else x


def path_analysis(model: nn.Module, batch, *, max_k: int | None = None, draws: int = 10, seed: int = 0) -> dict:
    """Distribution, per-length gradient magnitudes and effective paths of ``model`` on ``batch``."""
    was_training = model.training
    model.eval()
    try:
        _, chain = block_chain(model)
        x0 = chain_input(model, batch)
        grads = path_gradients([b for _, b in chain], x0, max_k=max_k, draws=draws, seed=seed)
    finally:
        model.train(was_training)
    n = len(chain)
    dist = path_length_distribution(n)
    return {"n": n, "blocks": [name for name, _ in chain], "input_shape": list(x0.shape),
            "distribution": dist, "gradients": grads, "effective": effective_paths(dist, grads)}
