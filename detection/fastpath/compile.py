"""``torch.compile`` (Inductor) of the dense parts, in place.

For inference the weights are frozen into the graph (``freezing``): BatchNorm already folded,
convolutions get oneDNN's pre-packed weights and fuse their bias, ReLU and residual add. Shapes are
dynamic (images of any size, any number of RoIs) so one compilation serves a whole evaluation.
Compiling costs tens of seconds on a laptop CPU (README, "Speed"): worth it for an evaluation or a
long prediction run, not for one image.
"""
from __future__ import annotations

import logging

import torch.nn as nn

from .parts import Compiled, get_part, part_names, set_part

logger = logging.getLogger(__name__)


def compile_parts(model: nn.Module, inference: bool, names=None) -> nn.Module:
    """Compile each dense part of ``model`` (or those in ``names``) in place. ``inference``: each part
    becomes a ``Compiled`` (frozen weights; eval mode and no_grad only); else the parts' own forward is
    compiled (``nn.Module.compile``), so training and its checkpoints' keys are unchanged."""
    names = part_names(model) if names is None else tuple(names)
    for name in names:
        if inference:
            set_part(model, name, Compiled(get_part(model, name)))
        else:
            get_part(model, name).compile(dynamic=True)
    logger.info("torch.compile (Inductor%s): %s; the first call of each compiles",
                ", frozen weights" if inference else "", ", ".join(names))
    return model
