"""The ResNet family of the paper: depths 18..152, shortcut options A/B/C, plain variant.

Layout and names follow the detection convention (Detectron2's): ``stem`` then stages ``res2``..
``res5`` with strides 4/8/16/32, each an ``nn.Sequential`` of blocks. A block computes
``y = relu(F(x) + shortcut(x))``; with ``residual=False`` it computes ``y = relu(F(x))``, the
paper's plain baseline.

Input: a float tensor (B, 3, H, W), already normalised by the detector.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from detection.layers import ConvNorm, convert_to_frozen_bn, get_norm

# Blocks per stage (res2..res5) and block type, from the paper's table 1.
DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
SHORTCUTS = ("A", "B", "C")
STAGE_NAMES = ("res2", "res3", "res4", "res5")


class ZeroPadShortcut(nn.Module):
    """Option A: identity, subsampled by ``stride``, with zero channels appended (no parameters)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.extra = out_channels - in_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra)) if self.extra else x


def make_shortcut(kind: str, in_channels: int, out_channels: int, stride: int, norm: str, gn_groups: int):
    """The shortcut of a block, or None for a plain identity (option A/B without a size change)."""
    if kind not in SHORTCUTS:
        raise ValueError(f"unknown shortcut option {kind!r}; expected one of {SHORTCUTS}")
    changes = stride != 1 or in_channels != out_channels
    if kind == "C" or (kind == "B" and changes):
        return ConvNorm(in_channels, out_channels, 1, stride=stride, bias=False,
                        norm=get_norm(norm, out_channels, gn_groups))
    if kind == "A" and changes:
        return ZeroPadShortcut(in_channels, out_channels, stride)
    return None


class ResidualBlock(nn.Module):
    """Shared forward of the basic and bottleneck blocks: relu(branch(x) + shortcut(x))."""

    residual: bool
    shortcut: nn.Module | None

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch(x)
        if self.residual:
            out = out + (self.shortcut(x) if self.shortcut is not None else x)
        return F.relu(out)

    def last_norm(self) -> nn.Module:
        raise NotImplementedError


class BasicBlock(ResidualBlock):
    """Two 3x3 convs (ResNet-18/34)."""

    def __init__(self, in_channels, out_channels, *, bottleneck_channels=None, stride=1, norm="BN",
                 gn_groups=32, shortcut="B", residual=True, stride_in_1x1=False, dilation=1):
        super().__init__()
        self.residual = residual
        self.shortcut = make_shortcut(shortcut, in_channels, out_channels, stride, norm, gn_groups) if residual else None
        self.conv1 = ConvNorm(in_channels, out_channels, 3, stride=stride, padding=dilation, dilation=dilation,
                              bias=False, norm=get_norm(norm, out_channels, gn_groups))
        self.conv2 = ConvNorm(out_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=False,
                              norm=get_norm(norm, out_channels, gn_groups))

    def branch(self, x):
        return self.conv2(F.relu(self.conv1(x)))

    def last_norm(self):
        return self.conv2.norm


class BottleneckBlock(ResidualBlock):
    """1x1 reduce, 3x3, 1x1 restore (ResNet-50/101/152).

    ``stride_in_1x1``: the MSRA/caffe layout ("v1", needed for caffe and Detectron2 weights)
    puts the stride in the first 1x1 conv; torchvision's "v1.5" puts it in the 3x3.
    """

    def __init__(self, in_channels, out_channels, *, bottleneck_channels, stride=1, norm="BN", gn_groups=32,
                 shortcut="B", residual=True, stride_in_1x1=True, dilation=1):
        super().__init__()
        self.residual = residual
        self.shortcut = make_shortcut(shortcut, in_channels, out_channels, stride, norm, gn_groups) if residual else None
        s1x1, s3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = ConvNorm(in_channels, bottleneck_channels, 1, stride=s1x1, bias=False,
                              norm=get_norm(norm, bottleneck_channels, gn_groups))
        self.conv2 = ConvNorm(bottleneck_channels, bottleneck_channels, 3, stride=s3x3, padding=dilation,
                              dilation=dilation, bias=False, norm=get_norm(norm, bottleneck_channels, gn_groups))
        self.conv3 = ConvNorm(bottleneck_channels, out_channels, 1, bias=False,
                              norm=get_norm(norm, out_channels, gn_groups))

    def branch(self, x):
        return self.conv3(F.relu(self.conv2(F.relu(self.conv1(x)))))

    def last_norm(self):
        return self.conv3.norm


BLOCKS = {"basic": BasicBlock, "bottleneck": BottleneckBlock}


class Stem(nn.Module):
    """conv1: 7x7/2 conv + norm + relu, then 3x3/2 max pool (stride 4 in all)."""

    def __init__(self, in_channels=3, out_channels=64, norm="BN", gn_groups=32):
        super().__init__()
        self.conv1 = ConvNorm(in_channels, out_channels, 7, stride=2, padding=3, bias=False,
                              norm=get_norm(norm, out_channels, gn_groups))

    def forward(self, x):
        return F.max_pool2d(F.relu(self.conv1(x)), kernel_size=3, stride=2, padding=1)


class Stage(nn.Sequential):
    """A stage (res2..res5): blocks in sequence. Declares its ``out_channels`` and its ``stride``
    (output pixels per input pixel along each axis) for whoever stacks a head on it."""

    def __init__(self, blocks: Sequence[nn.Module], out_channels: int, stride: int):
        super().__init__(*blocks)
        self.out_channels = out_channels
        self.stride = stride


def make_stage(block: str, num_blocks: int, in_channels: int, out_channels: int, bottleneck_channels: int,
               first_stride: int, **block_kwargs) -> Stage:
    """``num_blocks`` blocks; only the first changes resolution (``first_stride``) and width."""
    cls = BLOCKS[block]
    blocks = []
    for i in range(num_blocks):
        blocks.append(cls(in_channels if i == 0 else out_channels, out_channels,
                          bottleneck_channels=bottleneck_channels, stride=first_stride if i == 0 else 1,
                          **block_kwargs))
    return Stage(blocks, out_channels, first_stride)


class ResNet(nn.Module):
    """Stem and stages ``res2``..``res{last}``; optionally an ImageNet head (avgpool + ``linear``).

    Declares ``out_channels`` and ``stride`` (in input pixels) of its last stage.

    ``forward`` returns a dict {stage name: feature map} for the names in ``out_features``, plus
    ``"linear"`` (B, num_classes) logits when a head is attached.
    """

    STEM_STRIDE = 4

    def __init__(self, stem: nn.Module, stages: Sequence[Stage], out_features: Sequence[str] | None = None,
                 num_classes: int | None = None):
        super().__init__()
        self.stem = stem
        self.stage_names = [STAGE_NAMES[i] for i in range(len(stages))]
        for name, stage in zip(self.stage_names, stages):
            self.add_module(name, stage)
        self.out_features = list(out_features or [self.stage_names[-1]])
        self.num_classes = num_classes
        self.out_channels = stages[-1].out_channels  # of the last stage
        self.stride = self.STEM_STRIDE * math.prod(stage.stride for stage in stages)  # of the last stage
        if num_classes is not None:
            self.linear = nn.Linear(self.out_channels, num_classes)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = {}
        x = self.stem(x)
        if "stem" in self.out_features:
            outputs["stem"] = x
        for name in self.stage_names:
            x = getattr(self, name)(x)
            if name in self.out_features:
                outputs[name] = x
        if self.num_classes is not None:
            outputs["linear"] = self.linear(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
        return outputs

    def blocks(self):
        """(name, block) for every residual block, in order: ``res2.0``, ``res2.1``, ..."""
        for name in self.stage_names:
            for i, block in enumerate(getattr(self, name)):
                yield f"{name}.{i}", block

    def freeze(self, freeze_at: int) -> "ResNet":
        """Freeze the stem (freeze_at >= 1) and res2..res{freeze_at}: no gradient, norms frozen."""
        parts = ([self.stem] if freeze_at >= 1 else []) + [
            getattr(self, n) for n in self.stage_names[: max(0, freeze_at - 1)]
        ]
        for part in parts:
            for p in part.parameters():
                p.requires_grad_(False)
            convert_to_frozen_bn(part)
        return self


def init_weights(model: nn.Module, zero_init_residual: bool = False) -> None:
    """He (MSRA) init for convs, unit/zero for norms, small normal for linear layers."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)
    if zero_init_residual:
        for m in model.modules():
            if isinstance(m, ResidualBlock):
                norm = m.last_norm()
                if isinstance(norm, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm)):
                    nn.init.zeros_(norm.weight)
                else:  # FrozenBN: its scale is a buffer
                    norm.weight.zero_()


def resnet_spec(depth: int, stage_blocks: Sequence[int] = (), block: str = "") -> tuple[str, list[int]]:
    """(block type, blocks per stage) from a depth or from explicit stage counts."""
    if stage_blocks:
        if len(stage_blocks) != 4 or any(int(n) < 1 for n in stage_blocks):
            raise ValueError(f"MODEL.RESNETS.STAGE_BLOCKS must be 4 positive counts; got {list(stage_blocks)}")
        if block not in BLOCKS:
            raise ValueError(f"MODEL.RESNETS.BLOCK must be one of {list(BLOCKS)} with STAGE_BLOCKS; got {block!r}")
        return block, list(stage_blocks)
    if depth not in DEPTHS:
        raise ValueError(f"MODEL.RESNETS.DEPTH must be one of {sorted(DEPTHS)}; got {depth}")
    kind, counts = DEPTHS[depth]
    return block or kind, list(counts)


def build_resnet_stages(*, depth=50, stage_blocks=(), block="", norm="FrozenBN", gn_groups=32, shortcut="B",
                        stride_in_1x1=True, residual=True, stem_out_channels=64, res2_out_channels=256,
                        width_per_group=64, res5_dilation=1, num_stages=4, in_channels=3):
    """The stem and ``num_stages`` stages (res2..), with the channel plan of the paper.

    Returns (stem, [stage modules]). Basic-block nets use 64/128/256/512 channels regardless of
    ``res2_out_channels``; bottleneck nets use res2_out_channels (256) doubling per stage.
    """
    kind, counts = resnet_spec(depth, stage_blocks, block)
    if res5_dilation not in (1, 2):
        raise ValueError(f"MODEL.RESNETS.RES5_DILATION must be 1 or 2; got {res5_dilation}")
    stem = Stem(in_channels, stem_out_channels, norm, gn_groups)
    out_ch = res2_out_channels if kind == "bottleneck" else stem_out_channels
    in_ch, mid = stem_out_channels, width_per_group
    stages = []
    for i in range(num_stages):
        dilation = res5_dilation if i == 3 else 1
        first_stride = 1 if i == 0 or dilation == 2 else 2
        stages.append(make_stage(kind, counts[i], in_ch, out_ch, mid, first_stride, norm=norm, gn_groups=gn_groups,
                                 shortcut=shortcut, residual=residual, stride_in_1x1=stride_in_1x1,
                                 dilation=dilation))
        in_ch, out_ch, mid = out_ch, out_ch * 2, mid * 2
    return stem, stages
