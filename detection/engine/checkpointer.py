"""Training checkpoints: written atomically, found again through a ``last_checkpoint`` pointer."""
from __future__ import annotations

import ast
import logging
import os
import random

import numpy as np
import torch

from detection.utils.comm import unwrap_model
from detection.utils.io import atomic_write, write_text

logger = logging.getLogger(__name__)

POINTER = "last_checkpoint"


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

    def last_checkpoint(self) -> str | None:
        pointer = os.path.join(self.output_dir, POINTER)
        if not os.path.isfile(pointer):
            return None
        with open(pointer) as f:
            path = os.path.join(self.output_dir, f.read().strip())
        return path if os.path.isfile(path) else None

    def resume(self) -> dict:
        """Load everything from the last checkpoint; returns its dict (iteration, extras)."""
        path = self.last_checkpoint()
        if path is None:
            raise FileNotFoundError(f"--resume: no checkpoint in {self.output_dir} (no {POINTER} file)")
        data = torch.load(path, map_location="cpu", weights_only=True)
        model = unwrap_model(self.model)
        model.load_state_dict(data["model"])
        for key, obj in (("optimizer", self.optimizer), ("scheduler", self.scheduler), ("scaler", self.scaler)):
            if obj is not None and key in data:
                obj.load_state_dict(data[key])
        if "rng" in data:
            set_rng_state(data["rng"])
        logger.info("resumed from %s at iteration %d", path, data["iteration"])
        return data
