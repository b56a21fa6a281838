"""The best evaluation so far and early stopping (TEST.BEST_METRIC, TEST.BEST_METRIC_MODE, TEST.PATIENCE).

The metric is read from the first dataset of DATASETS.TEST. Its state (best value, its iteration,
evaluations since it improved) is saved in every checkpoint, so it survives ``--resume``.
"""
from __future__ import annotations

import math

from detection.evaluation.evaluator import DETECTION_SCALAR_KEYS
from detection.evaluation.loc_eval import LOC_METRIC_KEYS

__all__ = ["BestMetric", "default_metric", "known_metrics", "metric_mode"]

_LOWER_IS_BETTER = ("err", "loss")


def known_metrics(evaluator_type: str) -> list[str]:
    """The scalar metrics an evaluator of this type returns (what TEST.BEST_METRIC may name)."""
    if evaluator_type == "loc":
        return list(LOC_METRIC_KEYS)
    return list(DETECTION_SCALAR_KEYS)


def default_metric(evaluator_type: str) -> str:
    """TEST.BEST_METRIC when it is empty: AP50 for detection, loc_err_gt for localization."""
    return "loc_err_gt" if evaluator_type == "loc" else "AP50"


def metric_mode(metric: str, mode: str = "auto") -> str:
    """"max" or "min": ``mode`` itself, or with "auto" "min" for error and loss metrics (names
    containing "err" or "loss", e.g. loc_err_gt) and "max" for the rest (AP, AR)."""
    if mode not in ("auto", "max", "min"):
        raise ValueError(f"TEST.BEST_METRIC_MODE must be auto, max or min; got {mode!r}")
    if mode != "auto":
        return mode
    return "min" if any(t in metric.lower() for t in _LOWER_IS_BETTER) else "max"


class BestMetric:
    """Tracks one metric over evaluations: the best value, where it was reached, and how many
    evaluations have passed without improving on it (``patience`` > 0 ends training after that many)."""

    def __init__(self, metric: str, mode: str = "auto", patience: int = 0):
        if patience < 0:
            raise ValueError(f"TEST.PATIENCE must be >= 0 (0 = off); got {patience}")
        self.metric, self.mode, self.patience = metric, metric_mode(metric, mode), int(patience)
        self.value: float | None = None
        self.iteration: int | None = None
        self.since = 0  # evaluations since the last improvement

    def value_of(self, results: dict) -> float:
        """The tracked metric in ``{dataset: metrics}`` (its first dataset); errors name the keys there are."""
        if not results:
            raise ValueError("no evaluation results to take TEST.BEST_METRIC from (is DATASETS.TEST empty?)")
        name, metrics = next(iter(results.items()))
        if self.metric not in metrics or not isinstance(metrics[self.metric], (int, float)):
            keys = [k for k, v in metrics.items() if isinstance(v, (int, float))]
            raise KeyError(f"TEST.BEST_METRIC {self.metric!r} is not a metric of the evaluation on {name}; "
                           f"available: {', '.join(keys)}")
        return float(metrics[self.metric])

    def update(self, value: float, iteration: int) -> bool:
        """Record an evaluation; True if it is a new best (NaN never is)."""
        better = not math.isnan(value) and (
            self.value is None or (value > self.value if self.mode == "max" else value < self.value))
        if better:
            self.value, self.iteration, self.since = value, iteration, 0
        else:
            self.since += 1
        return better

    @property
    def exhausted(self) -> bool:
        """Patience is on and used up: training should stop."""
        return self.patience > 0 and self.since >= self.patience

    def describe(self) -> str:
        if self.value is None:
            return f"no {self.metric} recorded yet"
        return f"best {self.metric} {self.value:.4g} at iteration {self.iteration}"

    def state_dict(self) -> dict:
        return {"metric": self.metric, "mode": self.mode, "value": self.value, "iteration": self.iteration,
                "since": self.since}

    def load_state_dict(self, state: dict | None) -> bool:
        """Restore a saved state; a state of another metric or direction is ignored (returns False)."""
        if not state or state.get("metric") != self.metric or state.get("mode") != self.mode:
            return False
        self.value, self.iteration, self.since = state["value"], state["iteration"], int(state["since"])
        return True
