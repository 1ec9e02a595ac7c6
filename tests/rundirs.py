"""Run directories for the compare and report tests: tiny real trainings and hand-written edge cases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import tiny

import regbench
from regbench.rundir import config_yaml


def train_runs(root: Path) -> Path:
    """Three seeds of `tiny`, two seeds of `tiny_l2` (l2_decay 0.01): five 2-epoch trainings, about 2 s."""
    for seed in (1, 2, 3):
        regbench.train(tiny(seed=seed, optimizer__lr=0.01), root, quiet=True)
    for seed in (1, 2):
        regbench.train(
            tiny(name="tiny_l2", seed=seed, optimizer__lr=0.01, regularizer__l2_decay=0.01), root, quiet=True
        )
    return root


def fake_run(
    path: Path,
    status: str = "completed",
    summary: dict[str, Any] | None = None,
    metrics: list[dict[str, Any]] | None = None,
    torn: bool = False,
    **config_over: Any,
) -> Path:
    """A hand-written run directory (no model.pt) with the given status, summary fields and metrics."""
    path.mkdir(parents=True)
    cfg = tiny(**config_over)
    (path / "config.yaml").write_text(config_yaml(cfg.to_dict()), encoding="utf-8")
    data = {
        "name": cfg.name,
        "status": status,
        "seed": cfg.seed,
        "epochs_done": len(metrics or []),
        "input_shape": [1, 8, 8],
        "heads": [{"name": "class", "classes": ["c0", "c1", "c2"]}],
        **(summary or {}),
    }
    (path / "summary.json").write_text(json.dumps(data), encoding="utf-8")
    lines = "".join(json.dumps(m) + "\n" for m in metrics or [])
    if torn:
        lines += '{"epoch": 3, "train_loss": 0.'
    (path / "metrics.jsonl").write_text(lines, encoding="utf-8")
    return path


def metrics_rows(accs: list[float]) -> list[dict[str, Any]]:
    return [
        {"epoch": i + 1, "train_loss": 1.0 / (i + 1), "train_acc": a, "val_loss": 1.0, "val_acc": a - 0.05}
        for i, a in enumerate(accs)
    ]
