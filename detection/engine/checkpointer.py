"""Training checkpoints: written atomically, found again through a ``last_checkpoint`` pointer.

Resuming never starts over silently: a pointer that names a missing file stops the run with a
message, checkpoints without a pointer (a kill between the two writes) resume from the newest, and
an unreadable checkpoint is an error naming it.
"""
from __future__ import annotations

import ast
import logging
import os
import random
import re

import numpy as np
import torch

from detection.checkpoint import CheckpointNotFoundError, CorruptCheckpointError, WeightLoadError, read_raw
from detection.checkpoint.fit import check_finite
from detection.utils.comm import unwrap_model
from detection.utils.io import atomic_write, write_text

logger = logging.getLogger(__name__)

POINTER = "last_checkpoint"
# Temporary files an atomic write leaves when killed: ".x.pth.<pid>.<hex>.tmp" (utils.io.atomic_write)
# or "x.pth.tmp.<pid>" (the writer of earlier versions).
_TEMPORARY = re.compile(r"^(?:(?P<a>.+)\.tmp\.\d+|\.(?P<b>.+)\.\d+\.[0-9a-f]+\.tmp)$")
_SAVED = re.compile(r"^model_(\d+|final)\.pth$")


def rng_state() -> dict:
    """Every global RNG, in types that ``torch.load(weights_only=True)`` accepts."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [keys.tolist(), int(pos), int(has_gauss), float(gauss)],
            "python": repr(random.getstate()),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state(("MT19937", np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    # random.getstate() is a tuple of ints (and None), stored as its repr.
    random.setstate(ast.literal_eval(state["python"]))
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Checkpointer:
    """Saves and restores model, optimizer, scheduler, iteration, RNG states and the config."""

    def __init__(self, output_dir: str, model, optimizer=None, scheduler=None, scaler=None):
        self.output_dir = output_dir
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.scaler = scaler

    def save(self, name: str, iteration: int, pointer: bool = True, **extra) -> str:
        """Write OUTPUT_DIR/<name>.pth; ``pointer``: make it the one ``--resume`` continues from."""
        model = unwrap_model(self.model)
        data = {"model": model.state_dict(), "iteration": iteration, "rng": rng_state(), **extra}
        if self.optimizer is not None:
            data["optimizer"] = self.optimizer.state_dict()
        if self.scheduler is not None:
            data["scheduler"] = self.scheduler.state_dict()
        if self.scaler is not None:
            data["scaler"] = self.scaler.state_dict()
        path = os.path.join(self.output_dir, f"{name}.pth")
        atomic_write(path, lambda p: torch.save(data, p))  # a crash mid-save leaves the last good one
        if pointer:
            write_text(os.path.join(self.output_dir, POINTER), os.path.basename(path))
        logger.info("saved checkpoint %s (iteration %d)", path, iteration)
        return path

    def remove_temporary_files(self) -> list[str]:
        """Remove what an interrupted checkpoint write (a killed process) left in the output folder."""
        if not os.path.isdir(self.output_dir):
            return []
        removed = []
        for name in sorted(os.listdir(self.output_dir)):
            m = _TEMPORARY.match(name)
            target = m and (m["a"] or m["b"])
            if target and (target == POINTER or target.endswith(".pth")):
                os.remove(os.path.join(self.output_dir, name))
                removed.append(name)
        if removed:
            logger.info("removed %d temporary file(s) of an interrupted checkpoint write in %s: %s",
                        len(removed), self.output_dir, ", ".join(removed))
        return removed

    def last_checkpoint(self) -> str | None:
        """The checkpoint ``last_checkpoint`` names; without a pointer the newest ``model_*.pth`` (a run
        killed between writing a checkpoint and its pointer), or None when there is none.

        Raises :class:`CheckpointNotFoundError` when the pointer names a file that is not there:
        starting over would overwrite the run's outputs.
        """
        pointer = os.path.join(self.output_dir, POINTER)
        if not os.path.isfile(pointer):
            saved = [n for n in os.listdir(self.output_dir) if _SAVED.match(n)] if os.path.isdir(self.output_dir) else []
            if not saved:
                return None
            newest = max(saved, key=lambda n: (n == "model_final.pth", n))  # zero-padded: names sort by iteration
            logger.warning("no %s in %s: taking the newest checkpoint, %s", POINTER, self.output_dir, newest)
            return os.path.join(self.output_dir, newest)
        with open(pointer, encoding="utf-8", errors="replace") as f:
            name = f.read().strip()
        path = os.path.join(self.output_dir, name)
        if not name or not os.path.isfile(path):
            what = f"names {name!r}, which is not there" if name else "is empty"
            raise CheckpointNotFoundError(
                f"{pointer} {what}: refusing to start from iteration 0 over this run's outputs. Restore the "
                f"checkpoint, write the name of another one (model_*.pth in {self.output_dir}) into {pointer}, or "
                "delete the pointer to start over")
        return path

    def resume(self) -> dict:
        """Load everything from the last checkpoint; returns its dict (iteration, extras)."""
        path = self.last_checkpoint()
        if path is None:
            raise CheckpointNotFoundError(f"--resume: no checkpoint in {self.output_dir} (no {POINTER} file)")
        data = read_raw(path)  # a truncated or foreign file: CorruptCheckpointError naming it
        if not isinstance(data, dict) or not isinstance(data.get("model"), dict) or "iteration" not in data:
            raise CorruptCheckpointError(
                f"--resume: {path} is not a training checkpoint (a dict with 'model' and 'iteration', as "
                "tools/train_net.py writes); to start from other weights use MODEL.WEIGHTS without --resume")
        check_finite(path, list(data["model"].items()))
        model = unwrap_model(self.model)
        try:
            model.load_state_dict(data["model"])
            for key, obj in (("optimizer", self.optimizer), ("scheduler", self.scheduler), ("scaler", self.scaler)):
                if obj is not None and key in data:
                    obj.load_state_dict(data[key])
        except (RuntimeError, KeyError, ValueError) as e:
            first = str(e).strip().splitlines()[:3]
            raise WeightLoadError(
                f"--resume: {path} does not fit the model and optimizer built from this config "
                f"({' '.join(first)[:300]}); resume with the config the run was started with "
                f"({os.path.join(self.output_dir, 'config.yaml')})") from None
        if "rng" in data:
            set_rng_state(data["rng"])
        logger.info("resumed from %s at iteration %d", path, data["iteration"])
        return data
