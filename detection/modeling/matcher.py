"""Assign each prediction (anchor or proposal) to its best ground-truth box by IoU."""
from __future__ import annotations

import torch


class Matcher:
    """Threshold IoUs into labels.

    ``thresholds`` [t1, .., tn] split IoU into n+1 intervals [-inf, t1), [t1, t2), .., [tn, inf),
    labelled ``labels`` (n+1 values; 1 = positive, 0 = negative, -1 = ignored).
    RPN: thresholds [0.3, 0.7], labels [0, -1, 1]. RoI head: [0.5], [0, 1] (or [0.1, 0.5], [-1, 0, 1]).

    With ``allow_low_quality_matches`` each ground-truth box's best prediction(s) (ties included)
    are positive even below the top threshold, so every object gets at least one anchor.
    """

    def __init__(self, thresholds: list[float], labels: list[int], allow_low_quality_matches: bool = False):
        if len(labels) != len(thresholds) + 1:
            raise ValueError(f"Matcher needs len(labels) == len(thresholds) + 1; got {labels}, {thresholds}")
        if list(thresholds) != sorted(thresholds):
            raise ValueError(f"Matcher thresholds must be increasing; got {thresholds}")
        self.thresholds = [-float("inf"), *thresholds, float("inf")]
        self.labels = labels
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, iou: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """iou: (G, N) between G ground-truth boxes and N predictions.

        Returns (matched_gt (N,) int64 index of the best gt, labels (N,) int8). With no
        ground truth every prediction is labelled as the lowest interval (background).
        """
        n = iou.shape[1]
        if iou.shape[0] == 0:
            return (iou.new_zeros(n, dtype=torch.int64), iou.new_full((n,), self.labels[0], dtype=torch.int8))
        best_iou, matched = iou.max(dim=0)
        labels = matched.new_full((n,), 1, dtype=torch.int8)
        for label, low, high in zip(self.labels, self.thresholds[:-1], self.thresholds[1:]):
            labels[(best_iou >= low) & (best_iou < high)] = label
        if self.allow_low_quality_matches:
            best_per_gt = iou.max(dim=1, keepdim=True).values
            # Predictions that tie for a gt's best IoU (and overlap it at all).
            is_best = ((iou == best_per_gt) & (best_per_gt > 0)).any(dim=0)
            labels[is_best] = 1
        return matched, labels
