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

from .parts import get_part, part_names

logger = logging.getLogger(__name__)


def compile_parts(model: nn.Module, inference: bool, names=None) -> nn.Module:
    """Compile each dense part of ``model`` (or those in ``names``) in place; state-dict keys are
    unchanged (``nn.Module.compile``). ``inference``: freeze the weights (eval mode, no_grad only)."""
    options = {"freezing": True} if inference else {}
    for name in names if names is not None else part_names(model):
        get_part(model, name).compile(dynamic=True, options=options)
    logger.info("compiled %s with torch.compile (Inductor%s); the first call of each compiles",
                ", ".join(names if names is not None else part_names(model)), ", frozen weights" if inference else "")
    return model

