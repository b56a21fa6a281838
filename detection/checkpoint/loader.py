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
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from collections.abc import Iterable, Mapping

import numpy as np
import torch
import torch.nn as nn

from .converters import DEPRECATED_PIXEL_KEYS, Checkpoint, CheckpointInfo, convert_checkpoint
from .errors import CheckpointNotFoundError, CorruptCheckpointError, UnsafePickleError, WeightLoadError
from .fit import check_finite, check_partial
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


# --------------------------------------------------------------------------------------------- report
def _coarse(name: str) -> str:
    parts = name.split(".")
    if parts[0] in ("backbone", "roi_heads", "rpn", "proposal_generator", "module") and len(parts) > 2:
        return ".".join(parts[:2])
    return parts[0] if len(parts) > 1 else name


def group_names(names: Iterable[str], max_lines: int = 10) -> list[str]:
    """Readable lines for many parameter names: ``module.{a,b}`` per module, or counts per prefix
    (``backbone.res4.* (138 tensors)``) when that is still longer than ``max_lines``."""
    names = list(names)
    by_module: OrderedDict[str, list[str]] = OrderedDict()
    for n in names:
        mod, _, leaf = n.rpartition(".")
        by_module.setdefault(mod, []).append(leaf)
    lines = [f"{m}.{{{','.join(leaves)}}}" if len(leaves) > 1 else (f"{m}.{leaves[0]}" if m else leaves[0])
             for m, leaves in by_module.items()]
    if len(lines) <= max_lines:
        return lines
    groups: OrderedDict[str, list[str]] = OrderedDict()
    for n in names:
        groups.setdefault(_coarse(n), []).append(n)
    lines = [f"{p}.* ({len(g)} tensors)" if len(g) > 1 else g[0] for p, g in groups.items()]
    if len(lines) > max_lines:
        lines = lines[: max_lines - 1] + [f"... and {len(lines) - max_lines + 1} more groups"]
    return lines


@dataclass
class LoadReport:
    """What ``load_weights`` did. Names are the model's (after renaming), shapes are tuples."""

    path: str
    info: CheckpointInfo
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the model, not in the file (left as initialised)
    unexpected: list[str] = field(default_factory=list)  # in the file, not in the model
    shape_mismatch: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)  # name, file, model
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason): parts the model lacks
    benign: list[str] = field(default_factory=list)  # model entries needing nothing (num_batches_tracked, ...)
    num_model_tensors: int = 0  # model state entries, benign ones excluded
    num_model_values: int = 0  # their element count
    num_loaded_values: int = 0  # elements of the loaded tensors
    renamed: dict[str, str] = field(default_factory=dict)  # model name -> file name, where they differ
    warnings: list[str] = field(default_factory=list)  # config vs weights (input format, means, stride), depth
    notes: list[str] = field(default_factory=list)  # about this model/file pair (the checkpoint's own: info.notes)

    @property
    def fraction_loaded(self) -> float:
        return len(self.loaded) / self.num_model_tensors if self.num_model_tensors else 0.0

    @property
    def fraction_loaded_values(self) -> float:
        return self.num_loaded_values / self.num_model_values if self.num_model_values else 0.0

    @property
    def complete(self) -> bool:
        """Every model tensor loaded and every file tensor used (dropped parts aside)."""
        return not (self.missing or self.unexpected or self.shape_mismatch)

    def table(self, max_lines: int = 10) -> str:
        pad = " " * 6
        out = [f"Weights {self.path} [{self.info.describe()}]",
               f"  loaded: {len(self.loaded)} / {self.num_model_tensors} model tensors "
               f"({100 * self.fraction_loaded:.1f}%; {100 * self.fraction_loaded_values:.1f}% of the values)"]
        counts: OrderedDict[str, int] = OrderedDict()
        for n in self.loaded:
            counts[_coarse(n)] = counts.get(_coarse(n), 0) + 1
        width = max((len(p) for p in counts), default=0)
        out += [f"{pad}{p:<{width}}  {c}" for p, c in counts.items()]
        out.append(f"  missing (in the model, not in the file; left as initialised): {len(self.missing)}")
        out += [pad + line for line in group_names(self.missing, max_lines)]
        out.append(f"  unexpected (in the file, not in the model): {len(self.unexpected)}")
        out += [pad + line for line in group_names(self.unexpected, max_lines)]
        out.append(f"  shape mismatch (skipped): {len(self.shape_mismatch)}")
        width = max((len(n) for n, _, _ in self.shape_mismatch[:max_lines]), default=0)
        for name, fshape, mshape in self.shape_mismatch[:max_lines]:
            out.append(f"{pad}{name:<{width}}  file {tuple(fshape)}  model {tuple(mshape)}")
        if len(self.shape_mismatch) > max_lines:
            out.append(f"{pad}... and {len(self.shape_mismatch) - max_lines} more")
        if self.dropped:
            out.append(f"  dropped on purpose: {len(self.dropped)}")
            by_reason: OrderedDict[str, list[str]] = OrderedDict()
            for name, reason in self.dropped:
                by_reason.setdefault(reason, []).append(name)
            for reason, names in by_reason.items():
                out.append(f"{pad}{reason}: {', '.join(group_names(names, 3))}")
        if self.benign:
            leaves = sorted({n.rsplit('.', 1)[-1] for n in self.benign})
            out.append(f"  not in the file and not needed: {len(self.benign)} ({', '.join(leaves)})")
        for title, lines in (("notes", self.info.notes + self.notes), ("warnings", self.warnings)):
            if lines:
                out.append(f"  {title}:")
                out += [f"{pad}- {line}" for line in lines]
        return "\n".join(out)

    __str__ = table


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
