"""Sample a fixed number of labelled predictions with a bounded positive fraction."""
from __future__ import annotations

import torch


def sample_balanced(labels: torch.Tensor, num_samples: int, positive_fraction: float, bg_label: int,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of sampled positives and negatives.

    labels: (N,) with -1 = ignore, ``bg_label`` = negative, anything else = positive.
    At most ``int(num_samples * positive_fraction)`` positives; negatives fill the rest of
    ``num_samples`` when there are enough. Picks are uniform without replacement.
    """
    positive = torch.nonzero((labels != -1) & (labels != bg_label)).squeeze(1)
    negative = torch.nonzero(labels == bg_label).squeeze(1)
    num_pos = min(positive.numel(), int(num_samples * positive_fraction))
    num_neg = min(negative.numel(), num_samples - num_pos)
    dev = labels.device
    perm_pos = torch.randperm(positive.numel(), generator=generator, device="cpu")[:num_pos].to(dev)
    perm_neg = torch.randperm(negative.numel(), generator=generator, device="cpu")[:num_neg].to(dev)
    return positive[perm_pos], negative[perm_neg]
