"""Read a weight file of any supported format and load it into a model, with a readable report.

``load_weights(model, path)`` works for

* a backbone-only or classifier ResNet (names ``stem.*``, ``res2.*`` .. ``res5.*``, ``linear.*``),
* the C4 detector (trunk under ``backbone.``, res5 under ``roi_heads.res5.``, ``rpn.head.*``,
  ``roi_heads.box_predictor.*``),
* any module holding these parts under some prefix.

The file's tensors are grouped into parts (``stem``, ``res2``..``res5``, ``linear``, the RPN head, the
box predictor, anything else) and each part goes where the model keeps it: a torchvision ``layer4``
becomes ``roi_heads.res5`` in the detector and ``res5`` in a classifier. A part the model does not have
at all (the ImageNet ``linear`` head for a detector, the RPN for a backbone, res5 for a C4 trunk) is
dropped with a note rather than reported as unexpected.
"""
from __future__ import annotations

import logging
import os
import pickle
import re
import zipfile
from collections import Counter
from collections.abc import Iterable, Mapping

import numpy as np
import torch
import torch.nn as nn

from .converters import DEPRECATED_PIXEL_KEYS, Checkpoint, convert_checkpoint
from .errors import CheckpointNotFoundError, CorruptCheckpointError, UnsafePickleError, WeightLoadError
from .fit import check_finite, check_partial
from .report import LoadReport, group_names
from .safe_pickle import RestrictedUnpickler, _numpy_core

__all__ = ["LoadReport", "group_names", "load_checkpoint", "load_weights", "match_checkpoint", "read_checkpoint",
           "read_raw"]

_LOGGER = logging.getLogger(__name__)
MIN_LOADED_FRACTION = 0.10
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # first pickle of a pre-1.6 (non-zip) torch.save file
# Model entries that need nothing from a file: BN's batch counter; pixel mean/std set by the config.
_BENIGN_LEAVES = ("num_batches_tracked",) + DEPRECATED_PIXEL_KEYS


# --------------------------------------------------------------------------------------------- reading
def read_raw(path: str):
    """The object a weight file holds, read safely; errors name the file."""
    if not os.path.exists(path):
        raise CheckpointNotFoundError(f"checkpoint file not found: {path}")
    if not os.path.isfile(path):
        raise CheckpointNotFoundError(f"checkpoint path is not a file: {path}")
    if os.path.getsize(path) == 0:
        raise CorruptCheckpointError(f"checkpoint file {path} is empty")
    if zipfile.is_zipfile(path):  # torch.save (>= 1.6) format
        return _torch_load(path)
    try:
        with open(path, "rb") as f:
            obj = RestrictedUnpickler(f, encoding="latin1").load()
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{path}: {e}") from None
    except Exception as e:  # EOFError, UnpicklingError, ValueError, ... from a truncated or foreign file
        raise CorruptCheckpointError(
            f"cannot read checkpoint {path}: not a PyTorch (torch.save) or pickle weight file, or truncated "
            f"({type(e).__name__}: {e})") from None
    if isinstance(obj, int) and obj == _TORCH_LEGACY_MAGIC:  # legacy torch.save: its own loader
        return _torch_load(path)
    return obj


def _numpy_safe_globals() -> list:
    """numpy array globals for torch's weights_only unpickler (torch files that hold numpy arrays)."""
    multiarray = _numpy_core("multiarray")
    dtypes = [type(np.dtype(t)) for t in ("f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "?")]
    return [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype, *dtypes]


def _torch_load(path: str):
    try:
        safe_globals = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
        if safe_globals is not None:
            with safe_globals(_numpy_safe_globals()):
                return torch.load(path, map_location="cpu", weights_only=True)
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        if "weights_only" in msg.lower() or "weights only" in msg.lower() or "unsupported global" in msg.lower():
            first = msg.strip().splitlines()
            raise UnsafePickleError(
                f"{path}: refusing to load: the file needs code beyond plain tensors/containers "
                f"(torch.load weights_only=True said: {' '.join(first[:3])[:400]})") from None
        raise CorruptCheckpointError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}") from None
    except Exception as e:  # truncated zip, bad records, ...
        raise CorruptCheckpointError(
            f"cannot read checkpoint {path}: the torch.save file is corrupt or truncated ({type(e).__name__}: "
            f"{str(e)[:300]})") from None


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a weight file (torchvision / caffe2 / Detectron2 / ours; format from the content) safely.

    Pickles go through :class:`~detection.checkpoint.safe_pickle.RestrictedUnpickler` (latin1, for
    Python 2 caffe2 pickles), torch files through ``torch.load(weights_only=True)``.
    """
    path = os.fspath(path)
    obj = read_raw(path)
    if not isinstance(obj, Mapping):
        raise CorruptCheckpointError(f"checkpoint {path} does not hold weights: expected a dict of tensors or arrays, "
                                     f"got {type(obj).__name__}")
    return convert_checkpoint(obj, path)


# --------------------------------------------------------------------------------------------- placement
_STAGE_RE = re.compile(r"^(.*?)(?<![^.])(stem|res[2-5])\.(.+)$")
_RPN_RE = re.compile(r"^(.*?)(?<![^.])(rpn\.head|proposal_generator\.rpn_head)\.(.+)$")
_PRED_RE = re.compile(r"^(.*?)(?<![^.])(box_predictor)\.(.+)$")
_LINEAR_RE = re.compile(r"^(.*?)(?<![^.])(linear)\.(weight|bias)$")

_DROP_REASONS = {
    "linear": "ImageNet classifier head (torchvision fc / caffe2 fc1000): the model has no linear layer",
    "rpn": "RPN head: the model has none",
    "box_predictor": "box predictor: the model has none",
    "stem": "the model has no stem",
}


def _split(name: str) -> tuple[str, str, str] | None:
    """(anchor, part, rest) for names of parts placed by the model's naming, e.g.
    ``backbone.res4.0.conv1.weight`` -> (``backbone.res4.``, ``res4``, ``0.conv1.weight``)."""
    for regex, part in ((_STAGE_RE, None), (_RPN_RE, "rpn"), (_PRED_RE, "box_predictor"), (_LINEAR_RE, "linear")):
        m = regex.match(name)
        if m:
            return m[1] + m[2] + ".", part or m[2], m[3]
    return None


def _split_all(names: Iterable[str]) -> dict[str, tuple[str, str, str] | None]:
    """:func:`_split` for every name; ``linear`` counts as the ImageNet head only beside the stem."""
    splits = {n: _split(n) for n in names}
    stems = Counter(s[0][: -len("stem.")] for s in splits.values() if s is not None and s[1] == "stem")
    stem_prefix = stems.most_common(1)[0][0] if stems else ""
    for n, s in splits.items():
        if s is not None and s[1] == "linear" and s[0][: -len("linear.")] != stem_prefix:
            splits[n] = None  # some other module's linear layer: matched by its full name
    return splits


def _place(file_keys: Iterable[str], model_keys: set[str]) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """file name -> model name, and (file name, reason) for what is dropped on purpose."""
    found: dict[str, Counter] = {}
    for s in _split_all(model_keys).values():
        if s is not None:
            found.setdefault(s[1], Counter())[s[0]] += 1
    anchors = {part: counts.most_common(1)[0][0] for part, counts in found.items()}
    all_module = bool(model_keys) and all(k.startswith("module.") for k in model_keys)
    mapping: dict[str, str] = {}
    dropped: list[tuple[str, str]] = []
    for name, s in _split_all(file_keys).items():
        if s is None:
            mapping[name] = ("module." + name) if all_module and not name.startswith("module.") else name
        elif s[1] in anchors:
            mapping[name] = anchors[s[1]] + s[2]
        else:
            dropped.append((name, _DROP_REASONS.get(s[1], f"the model has no {s[1]} stage")))
    return mapping, dropped


def _model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return model.state_dict(keep_vars=True)


def match_checkpoint(model: nn.Module, checkpoint: Checkpoint) -> LoadReport:
    """Plan loading ``checkpoint`` into ``model`` without changing anything (shapes only; meta tensors work)."""
    report, _ = _plan(_model_state(model), checkpoint)
    return report


def _plan(model_state: dict[str, torch.Tensor], checkpoint: Checkpoint):
    model_keys = set(model_state)
    mapping, dropped = _place(checkpoint.state_dict.keys(), model_keys)
    report = LoadReport(path=checkpoint.info.path, info=checkpoint.info, dropped=dropped)
    pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
    targeted = set()
    for fname, mname in mapping.items():
        value = checkpoint.state_dict[fname]
        if mname in targeted:
            report.unexpected.append(fname)  # two file tensors for one model tensor
            continue
        if mname not in model_state:
            if mname.rsplit(".", 1)[-1] in _BENIGN_LEAVES:
                report.dropped.append((fname, "not used by the model's layers"))
            else:
                report.unexpected.append(mname)
            continue
        targeted.add(mname)
        dst = model_state[mname]
        if tuple(dst.shape) != tuple(value.shape):
            report.shape_mismatch.append((mname, tuple(value.shape), tuple(dst.shape)))
            continue
        report.loaded.append(mname)
        report.num_loaded_values += dst.numel()
        if mname != fname:
            report.renamed[mname] = fname
        pairs.append((dst, value))
    for mname in model_state:
        if mname in targeted:
            continue
        if mname.rsplit(".", 1)[-1] in _BENIGN_LEAVES:
            report.benign.append(mname)
        else:
            report.missing.append(mname)
    for name, fshape, mshape in report.shape_mismatch:
        if name.endswith("box_predictor.cls_score.weight"):
            report.notes.append(
                f"box predictor left as initialised: the file has {fshape[0] - 1} classes (+ background), the model "
                f"{mshape[0] - 1} (expected when fine-tuning on another dataset)")
    benign = set(report.benign)
    report.num_model_tensors = len(model_state) - len(benign)
    report.num_model_values = sum(t.numel() for k, t in model_state.items() if k not in benign)
    return report, pairs


def _samples(names, n=8) -> str:
    names = list(names)  # in the file's / model's own order
    return ", ".join(names[:n]) + (f", ... ({len(names) - n} more)" if len(names) > n else "")


def load_checkpoint(model: nn.Module, checkpoint: Checkpoint, *, strict: bool = False,
                    logger: logging.Logger | None = None, cfg=None, allow_partial: bool | None = None) -> LoadReport:
    """Load converted weights into ``model`` (see :func:`load_weights`)."""
    logger = logger or _LOGGER
    state = _model_state(model)
    report, pairs = _plan(state, checkpoint)
    path = checkpoint.info.path
    if cfg is not None:
        report.warnings += checkpoint.info.config_mismatches(cfg)
    check_finite(path, [(report.renamed.get(n, n), value) for n, (_, value) in zip(report.loaded, pairs)])
    if report.num_model_tensors == 0:
        raise WeightLoadError(f"cannot load {path}: the model has no parameters or buffers")
    if min(report.fraction_loaded, report.fraction_loaded_values) < MIN_LOADED_FRACTION:
        raise WeightLoadError(
            f"checkpoint {path} does not fit the model: only {len(report.loaded)} of {report.num_model_tensors} "
            f"model tensors match ({100 * report.fraction_loaded:.1f}% of the tensors, "
            f"{100 * report.fraction_loaded_values:.1f}% of the values; at least {100 * MIN_LOADED_FRACTION:.0f}% "
            f"of both are needed); "
            f"file format detected: {checkpoint.info.source}.\n"
            f"  file names (converted): {_samples(checkpoint.state_dict)}\n"
            f"  model names: {_samples(state)}\n"
            + (f"  shape mismatches: {len(report.shape_mismatch)}, e.g. "
               + "; ".join(f"{n} file {f} model {m}" for n, f, m in report.shape_mismatch[:3]) + "\n"
               if report.shape_mismatch else "")
            + "Is this the right file for this model (depth, format)?")
    if strict and not report.complete:
        raise WeightLoadError(f"strict loading of {path} failed:\n{report.table()}")
    if allow_partial is None:
        allow_partial = bool(cfg.MODEL.ALLOW_PARTIAL_WEIGHTS) if cfg is not None else True
    check_partial(report, allow_partial, logger)
    with torch.no_grad():
        for dst, value in pairs:
            dst.copy_(value.to(dtype=dst.dtype))
    level = logging.WARNING if (report.unexpected or report.shape_mismatch or report.warnings) else logging.INFO
    logger.log(level, "%s", report.table())
    return report


def load_weights(model: nn.Module, path: str | os.PathLike, *, strict: bool = False,
                 logger: logging.Logger | None = None, cfg=None, allow_partial: bool | None = None) -> LoadReport:
    """Read ``path`` (torchvision / caffe2 / Detectron2 / our checkpoint), convert, load into ``model``.

    Tensors are placed by the model's naming (plain ResNet, C4 detector with ``backbone.`` and
    ``roi_heads.res5.``), cast to the model's dtype and copied in place under ``torch.no_grad``.
    Tensors whose shapes differ are skipped and reported (e.g. a COCO predictor into a 20-class model).

    Raises :class:`WeightLoadError` if fewer than 10% of the model's tensors, or of its values, match
    (nothing is copied then), or with ``strict=True`` on any missing / unexpected / mismatched tensor
    (also before copying). A missing or corrupt file raises :class:`CheckpointNotFoundError` /
    :class:`CorruptCheckpointError`, a pickle that asks for code :class:`UnsafePickleError`; all are
    :class:`CheckpointError` and name the file. With ``cfg``, settings that do not fit the weights
    (input format, pixel mean/std, stride placement) are added to ``report.warnings``.

    A file holding NaN or infinite values raises :class:`NonFiniteWeightsError` naming a tensor. A
    file that leaves more than 1% of the model's ResNet tensors (stem, res2..res5) as initialised
    (an R50 file in an R101 model; the RPN and box predictor do not count) is *partial*: with
    ``allow_partial`` it is loaded with a warning that names the likely cause (depth, width, norm),
    without it :class:`PartialWeightsError` is raised before anything is copied. ``allow_partial=None``
    takes ``cfg.MODEL.ALLOW_PARTIAL_WEIGHTS`` when ``cfg`` is given (how evaluation and the demo
    load) and allows otherwise; training passes ``allow_partial=True``.
    """
    return load_checkpoint(model, read_checkpoint(path), strict=strict, logger=logger, cfg=cfg,
                           allow_partial=allow_partial)
