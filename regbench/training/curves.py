"""Every finished run draws its own learning curves (`curves.png` in the run directory) from metrics.jsonl."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.curves_png import run_curves_png

CURVES = "curves.png"


def draw_run_curves(path: Path, rows: list[dict[str, Any]], name: str) -> str | None:
    """Write `path/curves.png` from the run's metrics rows; a figure that cannot be drawn never fails the
    run: the reason is returned (for the log) instead."""
    try:
        run_curves_png(rows, path / CURVES, title=name)
        return None
    except Exception as e:  # a figure is a convenience: the run's results are already written
        return f"{CURVES} not drawn ({e.__class__.__name__}: {e})"
