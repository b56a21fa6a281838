"""Layer responses (the ResNet paper's figure 7): std of each residual branch's output.

The response of a block is its branch's output after the last norm and before the addition (and
the ReLU), recorded with a forward hook on ``block.last_norm()``. For a plain network the same
point (after the last norm, before the ReLU) is recorded. Per block we accumulate, per channel,
the sum and the sum of squares over every image and spatial position seen (and every RoI for the
detector's res5 blocks, which run per region), in float64, and report

* ``std``: the per-channel standard deviation over images and positions, averaged over channels
  (the headline number, plotted);
* ``std_all``: the standard deviation over all elements (channels pooled);
* ``mean``, ``count`` (values per channel).

With ``all_layers=True`` every norm inside the branches is recorded (the paper's figure plots
every 3x3 layer, i.e. both convs of a basic block), named ``<block>.conv1.norm`` etc.
The paper's finding: residual functions have smaller responses than plain layers, and the
deeper the net, the smaller the responses.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn as nn

from .common import block_kind, paper_name, residual_blocks


class _Stats:
    def __init__(self):
        self.n = 0
        self.s = None
        self.ss = None

    def add(self, t: torch.Tensor) -> None:
        t = t.detach().to(torch.float64)
        c = t.shape[1]
        flat = t.transpose(0, 1).reshape(c, -1)
        if self.s is None:
            self.s = torch.zeros(c, dtype=torch.float64, device=t.device)
            self.ss = torch.zeros(c, dtype=torch.float64, device=t.device)
        self.s += flat.sum(1)
        self.ss += (flat * flat).sum(1)
        self.n += flat.shape[1]

    def result(self) -> dict:
        if not self.n:
            return {"std": float("nan"), "std_all": float("nan"), "mean": float("nan"), "count": 0}
        mean_c = self.s / self.n
        var_c = (self.ss / self.n - mean_c ** 2).clamp_min(0)
        mean = self.s.sum() / (self.n * len(self.s))
        var_all = (self.ss.sum() / (self.n * len(self.s)) - mean ** 2).clamp_min(0)
        return {"std": float(var_c.sqrt().mean()), "std_all": float(var_all.sqrt()), "mean": float(mean),
                "count": self.n}


def _norms(block: nn.Module, all_layers: bool) -> list[tuple[str, nn.Module]]:
    if not all_layers:
        return [("", block.last_norm())]
    out = []
    for conv in ("conv1", "conv2", "conv3"):
        m = getattr(block, conv, None)
        if m is not None and getattr(m, "norm", None) is not None:
            out.append((f".{conv}.norm", m.norm))
    return out


@torch.no_grad()
def branch_responses(model: nn.Module, inputs: Iterable, forward: Callable | None = None,
                     all_layers: bool = False) -> list[dict]:
    """Per block (in forward order) the response statistics over every input of ``inputs``.

    ``inputs``: batches for ``forward(model, batch)`` (default ``model(batch)``): lists of image
    dicts for a detector, image tensors for a ResNet. The model is put in eval mode.
    Returns ``[{"index", "name", "paper_name", "kind", "std", "std_all", "mean", "count"}]``.
    """
    was_training = model.training
    model.eval()
    stats, handles, meta = {}, [], []
    for name, block in residual_blocks(model):
        for suffix, norm in _norms(block, all_layers):
            key = name + suffix
            stats[key] = _Stats()
            meta.append((key, block_kind(block)))
            handles.append(norm.register_forward_hook(lambda m, i, o, s=stats[key]: s.add(o)))
    try:
        for batch in inputs:
            forward(model, batch) if forward is not None else model(batch)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return [{"index": i, "name": key, "paper_name": paper_name(key), "kind": kind, **stats[key].result()}
            for i, (key, kind) in enumerate(meta)]


def responses_table(results: dict[str, list[dict]]) -> tuple[list[str], list[list]]:
    """(headers, rows): one row per layer index, std (and std_all) for each network."""
    labels = list(results)
    n = max(len(r) for r in results.values())
    headers = ["#", "layer"] + [h for lab in labels for h in (f"{lab} std", f"{lab} std_all")]
    rows = []
    for i in range(n):
        name = next(r[i]["name"] for r in results.values() if i < len(r))
        row = [i, name]
        for lab in labels:
            r = results[lab]
            row += [f"{r[i]['std']:.4f}", f"{r[i]['std_all']:.4f}"] if i < len(r) else ["", ""]
        rows.append(row)
    return headers, rows
