"""Matplotlib figures for files, with one backend policy for the whole package.

Figures are built with matplotlib's object API on an Agg canvas, never through ``pyplot``: the
process-wide backend is neither read nor changed, so a notebook or application keeps the
interactive backend it chose, nothing opens a window on a headless machine, and no figure has
to be closed (nothing registers it with pyplot's figure manager).
"""
from __future__ import annotations

import os

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def new_figure(figsize: tuple[float, float]) -> Figure:
    """An empty figure on its own Agg canvas; add axes with ``fig.subplots(...)``."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str, dpi: int = 100) -> str:
    """Tight layout, then the PNG at ``path`` (its folder created). Returns ``path``."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path
