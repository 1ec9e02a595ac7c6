"""Figures for compare and report: learning curves with seed bands, the book's parameter histogram, sample
predictions and a confusion matrix.

Everything draws on a bare `matplotlib.figure.Figure` (the Agg canvas, no pyplot state), so it works
without a display and never changes the backend of a caller that uses pyplot itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.figures import new_figure, save_figure
from ..core.values import first_head


# ----------------------------------------------------------------------------------------------- curves
@dataclass
class Curves:
    """The learning curves of one table row: one metrics list (and step list) per run of the row."""

    label: str
    metrics: list[list[dict[str, Any]]]
    steps: list[list[dict[str, Any]]] = field(default_factory=list)


def band(series: Sequence[dict[int, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, mean and sample std (0 where fewer than two runs have the point) over runs, aligned on x."""
    xs = sorted({x for s in series for x in s})
    mean, std = [], []
    for x in xs:
        vals = [s[x] for s in series if x in s]
        mean.append(float(np.mean(vals)))
        std.append(float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0)
    return np.array(xs, dtype=float), np.array(mean), np.array(std)


def smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Running mean over `window` points (shorter at the start), to read noisy per-step losses."""
    if window <= 1 or y.size == 0:
        return y
    c = np.cumsum(np.insert(y, 0, 0.0))
    idx = np.arange(1, y.size + 1)
    lo = np.maximum(0, idx - window)
    return (c[idx] - c[lo]) / (idx - lo)


MARKERS = "osD^v<>ph*"  # one per row, so rows whose curves coincide stay visible


def _draw(ax, series: list[dict[int, float]], color, label: str | None, style: str = "-", marker: str = ".") -> bool:
    series = [s for s in series if s]
    if not series:
        return False
    x, mean, std = band(series)
    every = max(1, len(x) // 15)
    ax.plot(x, mean, style, color=color, label=label, lw=1.5, marker=marker, markevery=every, ms=4, mfc="none")
    if len(series) > 1:
        ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.18, lw=0)
    return True


def curves(rows: Sequence[Curves], file: Path, head_note: str = "") -> Path:
    """Overlaid curves per row: train loss, train (dashed) and validation (solid) accuracy per epoch, and
    the per-step loss when any run has steps.jsonl. Rows with several runs get mean ± std bands."""
    has_steps = any(any(s for s in r.steps) for r in rows)
    n = 3 if has_steps else 2
    fig = new_figure(5.0 * n, 4.0)
    axes = fig.subplots(1, n)
    colors = [f"C{i % 10}" for i in range(len(rows))]
    for i, (r, color) in enumerate(zip(rows, colors, strict=True)):
        mk = MARKERS[i % len(MARKERS)]
        label = r.label if len(r.metrics) <= 1 else f"{r.label} (n={len(r.metrics)})"

        def per_epoch(key: str, r=r) -> list[dict[int, float]]:
            out = []
            for m in r.metrics:
                pts = {}
                for row in m:
                    v = first_head(row.get(key))
                    if isinstance(row.get("epoch"), int) and v is not None:
                        pts[row["epoch"]] = v
                out.append(pts)
            return out

        _draw(axes[0], per_epoch("train_loss"), color, label, marker=mk)
        _draw(axes[1], per_epoch("train_acc"), color, None, "--", marker=mk)
        _draw(axes[1], per_epoch("val_acc"), color, label, marker=mk)
        if has_steps:
            smoothed = []
            for s in r.steps:
                pts = [
                    (row["step"], float(row["loss"]))
                    for row in s
                    if isinstance(row.get("step"), int) and first_head(row.get("loss")) is not None
                ]
                if pts:
                    x = [p[0] for p in pts]
                    y = smooth(np.array([p[1] for p in pts]), max(1, len(pts) // 50))
                    smoothed.append(dict(zip(x, y.tolist(), strict=True)))
            _draw(axes[2], smoothed, color, label, marker=mk)
    axes[0].set(title="train loss per epoch", xlabel="epoch", ylabel="loss")
    axes[1].set(title=f"accuracy per epoch (train dashed, val solid){head_note}", xlabel="epoch", ylabel="accuracy")
    if has_steps:
        axes[2].set(title="train loss per step (running mean)", xlabel="step", ylabel="loss")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)), fontsize=8)
    return save_figure(fig, file)


# ----------------------------------------------------------------------------------------------- samples
@dataclass
class HeadPredictions:
    """One output head's view of the shown samples: class names, probabilities (N, K), answers (N,)."""

    name: str
    classes: list[str]
    probs: np.ndarray
    answers: np.ndarray


def _image(x: np.ndarray) -> tuple[np.ndarray, str | None]:
    """(C, H, W) or (F,) → something imshow draws: gray for one channel, RGB for three, min-max scaled."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        side = int(round(np.sqrt(x.size)))
        x = x.reshape(side, side) if side * side == x.size else x.reshape(1, -1)
    elif x.shape[0] == 3:
        x = np.transpose(x, (1, 2, 0))
    else:
        x = x[0]
    lo, hi = float(x.min()), float(x.max())
    x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    return x, ("gray" if x.ndim == 2 else None)


def sample_grid(images: np.ndarray, heads: Sequence[HeadPredictions], file: Path, title: str = "") -> Path:
    """A grid of test images; under each, per head, the estimated probability distribution as bars
    (the estimate in green when right, red when wrong) and `estimate : answer => O/X`, as the book's
    visualize prints it."""
    n = len(images)
    rows = 1 + len(heads)
    fig = new_figure(max(1.7 * n, 4.0), 1.75 * rows + 0.3)
    axes = np.array(fig.subplots(rows, n, squeeze=False))
    for i in range(n):
        img, cmap = _image(images[i])
        ax = axes[0, i]
        ax.imshow(img, cmap=cmap, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        for h, head in enumerate(heads):
            p = head.probs[i]
            est, ans = int(np.argmax(p)), int(head.answers[i])
            ok = est == ans
            colors = ["0.7"] * len(p)
            colors[est] = "tab:green" if ok else "tab:red"
            ax = axes[1 + h, i]
            ax.bar(np.arange(len(p)), 100 * p, color=colors, width=0.8)
            ax.bar([ans], [100 * p[ans]], fill=False, edgecolor="k", width=0.8, lw=0.8)
            ax.set_ylim(0, 100)
            ax.set_yticks([0, 50, 100] if i == 0 else [])
            ax.tick_params(labelsize=6)
            if len(p) <= 10:
                ax.set_xticks(np.arange(len(p)), head.classes, fontsize=6)
            else:
                ax.set_xticks([])
            caption = f"est {head.classes[est]} : ans {head.classes[ans]} {'O' if ok else 'X'}"
            prefix = f"{head.name}: " if len(heads) > 1 else ""
            ax.set_title(f"{prefix}{100 * p[est]:.0f}% {caption}", fontsize=7, color="tab:green" if ok else "tab:red")
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, file)


# ----------------------------------------------------------------------------------------------- confusion
def confusion(
    matrices: Sequence[np.ndarray], heads: Sequence[tuple[str, list[str]]], file: Path, title: str = ""
) -> Path:
    """Confusion matrices (rows: answer, columns: estimate), one per output head, counts written in the
    cells when there are few classes."""
    n = len(matrices)
    size = max(3.5, min(9.0, 0.32 * max(len(c) for _, c in heads) + 2.5))
    fig = new_figure(size * n, size)
    axes = np.atleast_1d(fig.subplots(1, n))
    for ax, m, (name, classes) in zip(axes, matrices, heads, strict=True):
        k = len(classes)
        ax.imshow(m, cmap="Blues", interpolation="nearest")
        acc = np.trace(m) / m.sum() if m.sum() else float("nan")
        ax.set_title(f"{name}: accuracy {acc:.3f}", fontsize=9)
        ax.set_xlabel("estimate")
        ax.set_ylabel("answer")
        fs = 7 if k <= 12 else 5
        ax.set_xticks(np.arange(k), classes, fontsize=fs, rotation=90 if k > 12 else 0)
        ax.set_yticks(np.arange(k), classes, fontsize=fs)
        if k <= 15:
            top = m.max() if m.size else 0
            for a in range(k):
                for e in range(k):
                    if m[a, e]:
                        ax.text(
                            e, a, str(int(m[a, e])), ha="center", va="center", fontsize=7,
                            color="white" if m[a, e] > top / 2 else "black",
                        )  # fmt: skip
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, file)
