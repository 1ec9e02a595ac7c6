"""Drawing without a display: a bare matplotlib Figure on the Agg canvas (no pyplot state, so a caller's
backend is never changed), saved as a small PNG; and the book's parameter histogram, which every run writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

DPI = 90  # small PNGs (tens of KB) that still read well in a report


def new_figure(width: float, height: float, layout: str | None = "constrained"):
    """A matplotlib Figure of `width`×`height` inches on the Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout=layout)
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


def run_curves(rows: list[dict], file: Path, title: str | None = None) -> Path:
    """One run's learning curves from its metrics.jsonl rows: train and validation loss, and train (dashed)
    and validation (solid) accuracy per epoch (the first head where there are several)."""

    def series(key: str) -> tuple[list[int], list[float]]:
        pts = []
        for r in rows:
            v = r.get(key)
            v = v[0] if isinstance(v, list) and v else v
            if isinstance(r.get("epoch"), int) and isinstance(v, (int, float)):
                pts.append((r["epoch"], float(v)))
        return [p[0] for p in pts], [p[1] for p in pts]

    fig = new_figure(8, 3.2, layout=None)  # fixed margins: a third cheaper than constrained layout, per run
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.15, top=0.84 if title else 0.9, wspace=0.3)
    loss, acc = fig.subplots(1, 2)
    for ax, keys, name in ((loss, ("train_loss", "val_loss"), "loss"), (acc, ("train_acc", "val_acc"), "accuracy")):
        for key, style in zip(keys, ("--", "-"), strict=True):
            x, y = series(key)
            if x:
                ax.plot(x, y, style, marker="o", ms=3, label=key.replace("_", " "))
        ax.set(xlabel="epoch", ylabel=name, title=f"{name} per epoch")
        ax.grid(True, alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, file)
