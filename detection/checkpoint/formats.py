"""The weight formats users bring, converted to our names: torchvision ImageNet ResNets, MSRA /
Detectron caffe2 pickles (BN folded into a scale and bias) and Detectron2 checkpoints. Each
``convert_*`` returns ``(tensors in our naming, ignored source names, notes)``; ``converters.py``
detects the format and dispatches."""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["BN_EPS", "DEPRECATED_PIXEL_KEYS", "convert_caffe2", "convert_detectron2", "convert_torchvision"]

BN_EPS = 1e-5
DEPRECATED_PIXEL_KEYS = ("pixel_mean", "pixel_std")


def format_floats(values) -> str:
    return "(" + ", ".join(f"{float(v):g}" for v in values) + ")"


# --------------------------------------------------------------------------------------------- values
def _to_tensor(value: Any) -> torch.Tensor | None:
    """A CPU tensor for a numeric tensor/array (arrays copied: unpickled ones may be read-only), else None."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":  # object / string / complex arrays are not weights
            return None
        return torch.from_numpy(np.array(value, order="C", copy=True))
    return None


def split_tensors(state: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Split a state mapping into tensors and the names of non-tensor entries."""
    tensors, other = {}, []
    for k, v in state.items():
        t = _to_tensor(v)
        if t is None:
            other.append(str(k))
        else:
            tensors[str(k)] = t
    return tensors, other


def strip_prefix(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


# --------------------------------------------------------------------------------------------- torchvision
def _torchvision_name(name: str) -> str | None:
    m = re.match(r"^conv1\.(.+)$", name)
    if m:
        return f"stem.conv1.{m[1]}"
    m = re.match(r"^bn1\.(.+)$", name)
    if m:
        return f"stem.conv1.norm.{m[1]}"
    m = re.match(r"^layer([1-4])\.(\d+)\.(conv|bn)(\d)\.(.+)$", name)
    if m:
        stage, block, kind, k, rest = int(m[1]) + 1, m[2], m[3], m[4], m[5]
        return f"res{stage}.{block}.conv{k}.{'norm.' if kind == 'bn' else ''}{rest}"
    m = re.match(r"^layer([1-4])\.(\d+)\.downsample\.([01])\.(.+)$", name)
    if m:
        return f"res{int(m[1]) + 1}.{m[2]}.shortcut.{'norm.' if m[3] == '1' else ''}{m[4]}"
    m = re.match(r"^fc\.(.+)$", name)
    if m:
        return f"linear.{m[1]}"
    return None


def convert_torchvision(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """torchvision ResNet names -> ours. Returns (tensors, ignored names, notes).

    ``num_batches_tracked`` is dropped (a BN training counter, not a weight); names that are not part
    of a torchvision ResNet are kept as they are, so they show up as unexpected when loading.
    """
    out: dict[str, torch.Tensor] = {}
    ignored, notes, kept = [], [], []
    for name, value in state.items():
        if name.endswith("num_batches_tracked"):
            ignored.append(name)
            continue
        new = _torchvision_name(name)
        if new is None:
            kept.append(name)
            new = name
        out[new] = value
    if ignored:
        notes.append(f"dropped {len(ignored)} BatchNorm num_batches_tracked counters (not weights)")
    if kept:
        notes.append(f"{len(kept)} entries are not torchvision ResNet names and were kept as they are: "
                     f"{sample_names(kept)}")
    return out, ignored, notes


# --------------------------------------------------------------------------------------------- caffe2
_C2_BRANCH = {"1": "shortcut", "2a": "conv1", "2b": "conv2", "2c": "conv3"}
_C2_SUFFIX = {"w": "weight", "b": "bias", "bn_s": "norm.weight", "bn_b": "norm.bias",
              "bn_rm": "norm.running_mean", "bn_riv": "norm.running_var", "gn_s": "norm.weight",
              "gn_b": "norm.bias"}
_C2_BLOCK = re.compile(r"^res(\d+)_(\d+)_branch(1|2a|2b|2c)_(w|b|bn_s|bn_b|bn_rm|bn_riv|gn_s|gn_b)$")
_C2_STEM = re.compile(r"^(?:conv1_(w|b)|(?:res_conv1|conv1)_(bn_s|bn_b|bn_rm|bn_riv|gn_s|gn_b))$")
_C2_FC = re.compile(r"^fc1000_(w|b)$")


def _caffe2_name(name: str) -> str | None:
    m = _C2_BLOCK.match(name)
    if m:
        return f"res{m[1]}.{m[2]}.{_C2_BRANCH[m[3]]}.{_C2_SUFFIX[m[4]]}"
    m = _C2_STEM.match(name)
    if m:
        return f"stem.conv1.{_C2_SUFFIX[m[1] or m[2]]}"
    m = _C2_FC.match(name)
    if m:
        return f"linear.{_C2_SUFFIX[m[1]]}"
    return None


def convert_caffe2(blobs: Mapping[str, Any], eps: float = BN_EPS) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """MSRA / Detectron caffe2 blob names -> ours. Returns (tensors, ignored names, notes).

    Folded BN (``_bn_s``, ``_bn_b`` only) becomes a frozen affine: weight=s, bias=b, running_mean=0,
    running_var=1-eps, so a FrozenBatchNorm2d/BatchNorm2d with ``eps`` computes exactly ``s * x + b``.
    Where the file also has running statistics (``_bn_rm``, ``_bn_riv``: unfolded caffe2 SpatialBN, as in
    pycls) they are used as running_mean/running_var, as Detectron2's loader does. Optimizer momenta
    (``*_momentum``) and blobs that are not ResNet weights (e.g. Detectron detection heads) are ignored.
    """
    out: dict[str, torch.Tensor] = {}
    ignored, momentum, unknown, non_tensor = [], [], [], []
    bn_norms: set[str] = set()
    for name, value in blobs.items():
        if name.endswith("_momentum"):
            momentum.append(name)
            continue
        new = _caffe2_name(name)
        t = _to_tensor(value)
        if new is None or t is None:
            (non_tensor if t is None else unknown).append(name)
            continue
        out[new] = t
        if "_bn_" in name:
            bn_norms.add(new.rsplit(".", 1)[0])  # "res2.0.conv1.norm"
    folded = 0
    for norm in sorted(bn_norms):
        scale = out.get(f"{norm}.weight")
        if scale is None:
            continue
        if f"{norm}.running_mean" not in out and f"{norm}.running_var" not in out:
            folded += 1
        if f"{norm}.running_mean" not in out:
            out[f"{norm}.running_mean"] = torch.zeros_like(scale, dtype=torch.float32)
        if f"{norm}.running_var" not in out:
            out[f"{norm}.running_var"] = torch.full_like(scale, 1.0 - eps, dtype=torch.float32)
    notes = []
    if folded:
        notes.append(f"{folded} BN layers folded into scale/bias: loaded as weight=s, bias=b, running_mean=0, "
                     f"running_var=1-eps (eps={eps:g})")
    if len(bn_norms) > folded:
        notes.append(f"{len(bn_norms) - folded} BN layers with running statistics (_bn_rm/_bn_riv) in the file: "
                     "used as running_mean/running_var")
    if momentum:
        notes.append(f"ignored {len(momentum)} optimizer momentum blobs (*_momentum)")
    if unknown:
        notes.append(f"ignored {len(unknown)} blobs that are not ResNet weights: {sample_names(unknown)}")
    if non_tensor:
        notes.append(f"ignored {len(non_tensor)} non-array entries: {sample_names(non_tensor)}")
    ignored = momentum + unknown + non_tensor
    return out, ignored, notes


# --------------------------------------------------------------------------------------------- detectron2
def convert_detectron2(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """Detectron2 names -> ours: ``proposal_generator.rpn_head.`` -> ``rpn.head.``; ``pixel_mean``/
    ``pixel_std`` dropped (the config sets them). Its torchvision-converted ImageNet pickles name the
    classifier ``stem.fc``: -> ``linear``. Returns (tensors, ignored names, notes)."""
    out: dict[str, torch.Tensor] = {}
    ignored, notes = [], []
    for name, value in state.items():
        if name in DEPRECATED_PIXEL_KEYS or name.endswith((".pixel_mean", ".pixel_std")):
            ignored.append(name)
            notes.append(f"dropped {name} = {format_floats(value.flatten().tolist())} from the file: "
                         f"the config's MODEL.{name.rsplit('.', 1)[-1].upper()} is used")
            continue
        if name.startswith("proposal_generator.rpn_head."):
            name = "rpn.head." + name[len("proposal_generator.rpn_head."):]
        elif name.startswith("stem.fc."):
            name = "linear." + name[len("stem.fc."):]
        out[name] = value
    if any(k.startswith("rpn.head.") for k in out):
        notes.append("renamed proposal_generator.rpn_head.* -> rpn.head.*")
    return out, ignored, notes


def sample_names(names, n: int = 5) -> str:
    names = list(names)
    more = f", ... ({len(names) - n} more)" if len(names) > n else ""
    return ", ".join(names[:n]) + more
