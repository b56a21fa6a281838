"""The layer table of a model ("model summary"): layer, output shape, parameters, multiply-adds.

Output shapes and multiply-adds come from forward hooks during one forward pass. Only convolutions
and linear layers are counted (as the ResNet paper's FLOPs and torchvision's GFLOPS are): for a
conv ``MACs = output elements x in_channels / groups x kh x kw``, for a linear layer
``MACs = output elements x in_features``; norms, ReLUs, pooling, additions and RoIAlign are left
out. Parameters include the scale and shift of frozen norms (buffers in ``FrozenBatchNorm2d``),
so the count does not depend on MODEL.RESNETS.NORM / FREEZE_AT; "trainable" counts what the
optimizer updates. By default the forward runs on PyTorch's "meta" device (shapes only, no arithmetic), so a
ResNet-101 detector at 800 x 1333 with 300 RoIs is summarised instantly.

Row granularity (``depth``): ``stage`` (stem, res2..res5, heads), ``block`` (each residual block;
the paper's conv2_1, conv2_2, ...) or ``leaf`` (every conv / norm / linear). Rows that are
expanded into their children are group rows: their parameters are shown in brackets as a subtotal
and not counted again in the totals.

For the whole detector (``detector_summary``) the trunk (stem..res4) and the RPN head run once per
image on an input of the given size, while res5 and the box predictor run once per RoI, on
``num_rois`` pooled RoIs (``MODEL.RPN.POST_NMS_TOPK_TEST`` by default) of size
``POOLER_RESOLUTION``: the table says which part each row belongs to and the totals give the
per-image MACs, the per-RoI MACs and the whole (image + num_rois x RoI).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
from torchvision.ops.misc import FrozenBatchNorm2d

from detection.modeling import build_model, build_resnet
from detection.modeling.backbone.resnet import ResidualBlock
from detection.utils.comm import unwrap_model

from .common import fmt_int, format_table, paper_name

DEPTHS = ("stage", "block", "leaf")
PER_IMAGE, PER_ROI = "per image", "per RoI"


@dataclass
class SummaryRow:
    name: str                      # module name ("" = the whole model)
    paper_name: str                # conv1, conv2_x, conv3_2 ...
    type: str                      # module class
    level: int                     # tree depth (indentation)
    output_shape: list = field(default_factory=list)   # last call's output shape(s)
    params: int = 0                # parameters of the subtree (recursive)
    own_params: int = 0            # parameters counted in the totals for this row
    macs: int = 0                  # multiply-adds of the subtree during the forward
    group: bool = False            # expanded into child rows
    part: str = ""                 # "per image" / "per RoI" for a detector


def count_params(module: nn.Module, recurse: bool = True) -> int:
    """Parameters of ``module``, counting a frozen norm's scale and shift (``FrozenBatchNorm2d``
    keeps them as buffers) as the parameters they are: a ResNet has the same count whether its
    norms are BN or FrozenBN, as in torchvision's and the paper's tables."""
    n = sum(p.numel() for p in module.parameters(recurse=recurse))
    mods = module.modules() if recurse else [module]
    for m in mods:
        if isinstance(m, FrozenBatchNorm2d):
            n += m.weight.numel() + m.bias.numel()
    return n


def trainable_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def conv_macs(module: nn.Conv2d, output: torch.Tensor) -> int:
    """Multiply-adds of one conv call: output elements x in_channels / groups x kh x kw."""
    kh, kw = module.kernel_size
    return output.numel() * (module.in_channels // module.groups) * kh * kw


def linear_macs(module: nn.Linear, output: torch.Tensor) -> int:
    return output.numel() * module.in_features


def _shape(out):
    if isinstance(out, torch.Tensor):
        return list(out.shape)
    if isinstance(out, (list, tuple)):
        return [_shape(o) for o in out]
    if isinstance(out, dict):
        return {k: _shape(v) for k, v in out.items()}
    return None


_CONTAINERS = ("FasterRCNN", "ResNet", "RPN", "Res5ROIHeads")


def _expand(module: nn.Module, depth: str) -> bool:
    """Whether ``module`` is shown as its children (a group row) at this ``depth``."""
    if not any(True for _ in module.children()):
        return False
    if depth == "leaf":
        return True
    if type(module).__name__ in _CONTAINERS:
        return True
    if depth == "block":
        return not isinstance(module, ResidualBlock) and type(module).__name__ not in ("Stem",)
    return False


class _Recorder:
    """Forward hooks on every module: output shapes and conv/linear multiply-adds."""

    def __init__(self, model: nn.Module):
        self.shapes: dict[str, list] = {}
        self.macs: dict[str, int] = {}
        self.handles = []
        for name, m in model.named_modules():
            self.handles.append(m.register_forward_hook(self._hook(name, m)))

    def _hook(self, name, module):
        def hook(mod, inputs, output):
            self.shapes[name] = _shape(output)
            if isinstance(mod, nn.Conv2d):
                self.macs[name] = self.macs.get(name, 0) + conv_macs(mod, output)
            elif isinstance(mod, nn.Linear):
                self.macs[name] = self.macs.get(name, 0) + linear_macs(mod, output)
        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


def _rows(model: nn.Module, rec: _Recorder, depth: str, part_of=lambda name: "") -> list[SummaryRow]:
    rows: list[SummaryRow] = []

    def subtree_macs(prefix):
        return sum(v for k, v in rec.macs.items() if k == prefix or not prefix or k.startswith(prefix + "."))

    def visit(name, module, level):
        expand = _expand(module, depth)
        params = count_params(module)
        own = count_params(module, recurse=False) if expand else params
        paper = paper_name(name) if name else ""
        rows.append(SummaryRow(name, "" if paper == name else paper, type(module).__name__, level,
                               rec.shapes.get(name, []), params, own, subtree_macs(name), expand, part_of(name)))
        if expand:
            for child_name, child in module.named_children():
                visit(f"{name}.{child_name}" if name else child_name, child, level + 1)

    visit("", model, 0)
    return rows


def backbone_summary(model: nn.Module, input_size=(224, 224), depth: str = "block", batch_size: int = 1,
                     in_channels: int = 3) -> dict:
    """Layer table of a ResNet (``build_resnet``) or any module taking an image tensor.

    The model is run on a (batch_size, in_channels, H, W) input of its own device (use a model built on the
    meta device for a shape-only pass). Returns ``{"rows": [SummaryRow as dict], "totals": {...}}``.
    """
    if depth not in DEPTHS:
        raise ValueError(f"depth must be one of {DEPTHS}; got {depth!r}")
    model = unwrap_model(model)
    device = next(model.parameters()).device
    rec = _Recorder(model)
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(batch_size, in_channels, *input_size, device=device))
    finally:
        rec.remove()
    rows = _rows(model, rec, depth)
    macs = sum(rec.macs.values())
    totals = {"params": count_params(model), "params_counted": sum(r.own_params for r in rows),
              "trainable_params": trainable_params(model),
              "macs": macs, "macs_per_image": macs // batch_size, "input_size": list(input_size),
              "batch_size": batch_size}
    return {"kind": "backbone", "rows": [asdict(r) for r in rows], "totals": totals}


def detector_summary(model: nn.Module, input_size=(800, 800), num_rois: int = 300, depth: str = "block",
                     seed: int = 0) -> dict:
    """Layer table of a FasterRCNN (C4): trunk + RPN head on one (1, 3, H, W) image, the RoI head
    (pooler, res5, box predictor) on ``num_rois`` random RoIs inside the image.

    Totals: ``macs_per_image`` (trunk + RPN head), ``macs_per_roi`` (res5 + predictor for one RoI),
    ``macs`` = per image + num_rois x per RoI. Proposal generation, NMS and RoIAlign are not counted.
    """
    if depth not in DEPTHS:
        raise ValueError(f"depth must be one of {DEPTHS}; got {depth!r}")
    model = unwrap_model(model)
    device = next(model.parameters()).device
    h, w = input_size
    rec = _Recorder(model)
    try:
        with torch.no_grad():
            model.eval()
            feats = model.backbone(torch.zeros(1, 3, h, w, device=device))[model.feature_name]
            model.rpn.head(feats)
            g = torch.Generator().manual_seed(seed)
            xy = torch.rand(num_rois, 2, generator=g) * torch.tensor([w * 0.5, h * 0.5])
            wh = (torch.rand(num_rois, 2, generator=g) * 0.5 + 0.1) * torch.tensor([w, h])
            boxes = torch.cat((xy, xy + wh), dim=1).to(device)
            model.roi_heads.box_predictor(model.roi_heads.region_features(feats, [boxes]))
    finally:
        rec.remove()

    def part_of(name):
        return PER_ROI if name.startswith("roi_heads") else (PER_IMAGE if name else "")

    rows = _rows(model, rec, depth, part_of)
    roi_macs = sum(v for k, v in rec.macs.items() if k.startswith("roi_heads"))
    image_macs = sum(rec.macs.values()) - roi_macs
    totals = {"params": count_params(model), "params_counted": sum(r.own_params for r in rows),
              "trainable_params": trainable_params(model),
              "params_per_image_part": count_params(model) - count_params(model.roi_heads),
              "params_per_roi_part": count_params(model.roi_heads),
              "macs_per_image": image_macs, "macs_per_roi": roi_macs // max(1, num_rois),
              "macs_rois": roi_macs, "num_rois": num_rois, "macs": image_macs + roi_macs,
              "input_size": [h, w]}
    return {"kind": "detector", "rows": [asdict(r) for r in rows], "totals": totals}


def summarize_cfg(cfg, part: str = "backbone", input_size=None, depth: str = "block", num_rois: int | None = None,
                  num_classes: int = 1000, device: str | None = "meta") -> dict:
    """Build the model of ``cfg`` (on ``device``; "meta" = shapes only) and summarise it.

    ``part``: ``backbone`` = the whole ResNet classifier of ``MODEL.RESNETS`` (stem..res5, global
    average pool and a ``num_classes`` linear layer, the seed document's table), ``trunk`` = the
    ResNet without the classifier, or ``detector`` = the whole FasterRCNN.
    """
    dev = torch.device(device) if device else torch.device("cpu")
    with torch.device(dev):
        if part in ("backbone", "trunk"):
            model = build_resnet(cfg, num_stages=4, num_classes=num_classes if part == "backbone" else None)
            return backbone_summary(model, tuple(input_size or (224, 224)), depth)
        if part == "detector":
            old = cfg.MODEL.DEVICE
            cfg.MODEL.DEVICE = str(dev)
            try:
                model = build_model(cfg)
            finally:
                cfg.MODEL.DEVICE = old
            size = tuple(input_size or (cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST))
            rois = cfg.MODEL.RPN.POST_NMS_TOPK_TEST if num_rois is None else num_rois
            return detector_summary(model, size, rois, depth)
    raise ValueError(f"part must be backbone, trunk or detector; got {part!r}")


def _fmt_shape(s) -> str:
    if not s:
        return "--"
    if isinstance(s, dict):
        return ", ".join(f"{k}: {_fmt_shape(v)}" for k, v in s.items())
    if isinstance(s[0], list):
        return " ".join(_fmt_shape(x) for x in s)
    return "[" + ", ".join(str(x) for x in s) + "]"


def _fmt_macs(n: int) -> str:
    if n == 0:
        return "--"
    return f"{n / 1e6:,.1f}M"


def format_summary(summary: dict) -> str:
    """The table (indented names, paper names, output shapes, parameters, MACs) and the totals."""
    detector = summary["kind"] == "detector"
    headers = ["layer", "paper", "type", "output shape", "params", "MACs"] + (["runs"] if detector else [])
    rows = []
    for r in summary["rows"]:
        name = ("  " * r["level"]) + (r["name"].split(".")[-1] if r["name"] else "(model)")
        params = f"[{fmt_int(r['params'])}]" if r["group"] else (fmt_int(r["params"]) if r["params"] else "--")
        macs = _fmt_macs(r["macs"])
        rows.append([name, r["paper_name"], r["type"], _fmt_shape(r["output_shape"]), params,
                     f"[{macs}]" if r["group"] and r["macs"] else macs] + ([r["part"]] if detector else []))
    t = summary["totals"]
    lines = [format_table(headers, rows, "lllrrr" + ("l" if detector else ""))]
    lines.append("[..] = subtotal of the rows below it (not counted again)")
    lines.append(f"input: {t['input_size'][0]} x {t['input_size'][1]}")
    lines.append(f"total params: {fmt_int(t['params'])} (trainable {fmt_int(t['trainable_params'])})")
    if detector:
        lines.append(f"  per-image part (trunk + RPN): {fmt_int(t['params_per_image_part'])}; "
                     f"per-RoI part (res5 + predictor): {fmt_int(t['params_per_roi_part'])}")
        lines.append(f"mult-adds per image (trunk + RPN head): {t['macs_per_image'] / 1e9:.3f} G")
        lines.append(f"mult-adds per RoI (res5 + predictor): {t['macs_per_roi'] / 1e9:.4f} G "
                     f"x {t['num_rois']} RoIs = {t['macs_rois'] / 1e9:.3f} G")
        lines.append(f"total mult-adds: {t['macs'] / 1e9:.3f} G (convolutions and linear layers only)")
    else:
        lines.append(f"total mult-adds: {t['macs_per_image'] / 1e9:.3f} G per image "
                     "(convolutions and linear layers only)")
    return "\n".join(lines)
