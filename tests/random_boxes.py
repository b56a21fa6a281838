"""Shared test helper: random xyxy boxes."""
import torch


def random_boxes(n, seed, max_xy=200.0, min_wh=1.0, max_wh=80.0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * max_xy
    wh = min_wh + torch.rand(n, 2, generator=g) * (max_wh - min_wh)
    return torch.cat((xy, xy + wh), dim=1)
