from __future__ import annotations

import torch.nn as nn


class ConvNorm(nn.Conv2d):
    """A conv followed by an optional norm layer, kept as ``.norm`` inside the conv.

    Keeping the norm inside gives the parameter names Detectron2 and our checkpoints use
    (``res2.0.conv1.weight``, ``res2.0.conv1.norm.weight``). No activation: blocks apply it.
    """

    def __init__(self, *args, norm: nn.Module | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm = norm

    def forward(self, x):
        x = super().forward(x)
        return self.norm(x) if self.norm is not None else x
