"""Drawing without a display: a bare matplotlib Figure on the Agg canvas (no pyplot state, so a caller's
backend is never changed), saved as a small PNG; and the book's parameter histogram, which every run writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

DPI = 90  # small PNGs (tens of KB) that still read well in a report


def new_figure(width: float, height: float):
    """A matplotlib Figure of `width`×`height` inches on the Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # the Agg canvas: no display, no pyplot
    return fig


def save_figure(fig, file: Path) -> Path:
    file = Path(file)
    file.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(file, dpi=DPI)
    return file


def param_hist(values: np.ndarray, file: Path, title: str | None = None) -> Path:
    """The book's show_param_dist: a 100-bin density histogram of the weights and kernels on the axis
    [-0.2, 0.2, 0, 20], with `mu=` and `sigma=` (population std, as the book's np.std) written on it."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    mu, sigma = (float(values.mean()), float(values.std())) if values.size else (0.0, 0.0)
    fig = new_figure(6, 4)
    ax = fig.subplots()
    ax.hist(values, 100, density=True, facecolor="g", alpha=0.75)
    ax.axis([-0.2, 0.2, 0, 20.0])
    ax.text(0.08, 15.0, f"mu={mu:5.3f}")
    ax.text(0.08, 13.0, f"sigma={sigma:5.3f}")
    ax.grid(True)
    if title:
        ax.set_title(title, fontsize=10)
    return save_figure(fig, file)
