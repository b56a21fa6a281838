"""Where training metrics go: metrics.jsonl (every logged value), TensorBoard if installed, and
a PNG of the loss and mAP curves at the end."""
from __future__ import annotations

import json
import logging
import os

from detection.utils.io import write_text
from detection.utils.plotting import new_figure, save_figure

logger = logging.getLogger(__name__)


class EventWriter:
    def __init__(self, output_dir: str, enabled: bool = True):
        self.output_dir = output_dir
        self.enabled = enabled
        self.path = os.path.join(output_dir, "metrics.jsonl")
        self.tb = None
        if enabled:
            os.makedirs(output_dir, exist_ok=True)
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(output_dir)
            except ImportError:  # tensorboard is optional
                logger.info("tensorboard not installed: writing metrics.jsonl only")

    def write(self, iteration: int, values: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({"iteration": iteration, **values}) + "\n")
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, iteration)

    def truncate_after(self, iteration: int) -> None:
        """On resume, drop records past the checkpoint so the curves have no duplicates."""
        if not (self.enabled and os.path.isfile(self.path)):
            return
        rows = [r for r in read_metrics(self.path) if r["iteration"] <= iteration]
        write_text(self.path, "".join(json.dumps(r) + "\n" for r in rows))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_metrics(path: str) -> list[dict]:
    """The records of a metrics.jsonl, in file order (training rows carry ``total_loss``,
    evaluation rows ``dataset`` and the metrics). A bad line is an error naming file and line."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: line {n}: malformed json: {e.msg}") from None
    return rows


def plot_curves(metrics_path: str, png_path: str) -> None:
    """Total and per-term training losses against iteration, and AP50 where evaluated."""
    rows = read_metrics(metrics_path)
    train = [r for r in rows if "total_loss" in r]
    evals = [r for r in rows if "AP50" in r]
    fig = new_figure((11 if evals else 6, 4))
    axes = fig.subplots(1, 2 if evals else 1, squeeze=False)
    ax = axes[0][0]
    for key in ["total_loss"] + sorted(k for k in (train[0] if train else {}) if k.startswith("loss_")):
        ax.plot([r["iteration"] for r in train], [r[key] for r in train], label=key,
                linewidth=2 if key == "total_loss" else 1)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title("training losses")
    if evals:
        ax = axes[0][1]
        ax.plot([r["iteration"] for r in evals], [r["AP50"] for r in evals], marker="o")
        ax.set_xlabel("iteration")
        ax.set_ylabel("mAP@0.5 (%)")
        ax.set_title("evaluation")
        ax.grid(True, alpha=0.3)
    save_figure(fig, png_path)
