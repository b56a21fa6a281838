"""``LoadReport``: what loading a weight file into a model did, and its readable table."""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from .converters import CheckpointInfo

__all__ = ["LoadReport", "group_names"]


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
