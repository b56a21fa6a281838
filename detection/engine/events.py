"""Where training metrics go: metrics.jsonl (every logged value), TensorBoard if installed, and
a PNG of the loss and mAP curves at the end."""
from __future__ import annotations

import json
import logging
import os

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
        with open(self.path) as f:
            rows = [line for line in f if line.strip() and json.loads(line)["iteration"] <= iteration]
        with open(self.path, "w") as f:
            f.writelines(rows)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_metrics(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_curves(metrics_path: str, png_path: str) -> None:
    """Total and per-term training losses against iteration, and AP50 where evaluated."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    train = [r for r in rows if "total_loss" in r]
    evals = [r for r in rows if "AP50" in r]
    fig, axes = plt.subplots(1, 2 if evals else 1, figsize=(11 if evals else 6, 4), squeeze=False)
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
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
