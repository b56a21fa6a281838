"""The dense parts of a model: submodules that map tensors to tensors with no data-dependent control
flow (the trunk, the RPN head, res5, the box predictor). Fast paths replace them and leave the rest
(proposals, pooling, NMS, post-processing) in eager PyTorch.

A model names its parts in ``dense_parts`` (all of them) and ``int8_parts`` (the convolution-heavy
ones worth quantizing: the trunk and res5), as dotted submodule paths.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils._pytree import tree_map


def get_part(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name)


def set_part(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def part_names(model: nn.Module, which: str = "dense_parts") -> tuple[str, ...]:
    names = getattr(model, which, None)
    if names is None:
        raise TypeError(f"{type(model).__name__} declares no {which}: fast paths apply to the detector "
                        f"(FasterRCNN) and the localizer (PCRLocalizer)")
    return tuple(names)


class Autocast(nn.Module):
    """Runs ``module`` under ``torch.autocast(dtype)`` and returns its floating outputs as float32,
    so that the eager code around it (proposals, NMS, box decoding) stays in full precision."""

    def __init__(self, module: nn.Module, dtype: torch.dtype, device_type: str):
        super().__init__()
        self.module = module
        self.dtype = dtype
        self.device_type = device_type

    def forward(self, *args):
        with torch.autocast(self.device_type, dtype=self.dtype):
            out = self.module(*args)
        return tree_map(lambda t: t.float() if isinstance(t, torch.Tensor) and t.is_floating_point() else t, out)


class Compiled(nn.Module):
    """``module`` compiled by Inductor for inference, its weights frozen into the graph (constants
    folded, oneDNN's pre-packed convolution weights). Dynamic shapes: one compilation serves images
    of any size and any number of RoIs. Inference only: ``train()``/``eval()`` leave it as it is (an
    exported program, e.g. an int8 part, refuses them)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module
        object.__setattr__(self, "_compiled", torch.compile(module, dynamic=True))  # not a second submodule

    def train(self, mode: bool = True) -> Compiled:
        self.training = mode
        return self

    def forward(self, *args):
        import torch._inductor.config as inductor_config  # here: importing Inductor takes a second

        # freezing is read when a graph is (re)compiled, inside this call: set here, not process-wide
        with inductor_config.patch(freezing=True), torch.no_grad():
            return self._compiled(*args)


def capture_inputs(model: nn.Module, names, batch: list[dict]) -> dict[str, tuple]:
    """The positional inputs each part in ``names`` receives when ``model`` runs on ``batch`` (first call)."""
    seen: dict[str, tuple] = {}
    hooks = []
    for name in names:
        def hook(_module, args, name=name):
            seen.setdefault(name, tuple(a.detach() for a in args))
        hooks.append(get_part(model, name).register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            model(batch)
    finally:
        for h in hooks:
            h.remove()
    missing = [n for n in names if n not in seen]
    if missing:
        raise RuntimeError(f"the model never called {missing} on this batch (no proposals?): use other images")
    return seen
