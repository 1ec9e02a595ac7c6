"""EXPERIMENTS.md's rows that are cheap enough to re-run in CI, re-run and compared with the document.

Section 4.4's two dropout rows (3 seeds × 301 epochs of a 6×100 MLP on 300 digits, one stacked pass each, one
thread as the section says): a change that moves them fails here until EXPERIMENTS.md is updated. The other
tables (18 to 100 runs each, or data sets that are not on a CI machine) are not re-run.
"""

from __future__ import annotations

import statistics as st
from pathlib import Path

import pytest

import regbench
from regbench.rundir import read_jsonl

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = ROOT / "EXPERIMENTS.md"
DROPOUT_LAYERS = (1, 3, 5, 7, 9, 11)  # the six dropout entries of configs/dlfs/digits_overfit_dropout.yaml


def row_of(label: str) -> list[str]:
    """The cells of the EXPERIMENTS.md table row whose second cell starts with `label`."""
    found = [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in EXPERIMENTS.read_text(encoding="utf-8").splitlines()
        if line.startswith("|") and len(line.split("|")) > 3 and line.split("|")[2].strip().startswith(label)
    ]
    if len(found) != 1:
        pytest.fail(f"EXPERIMENTS.md: expected one table row labelled {label!r}, found {len(found)}")
    return found[0]


def fmt(values: list[float]) -> str:
    return f"{st.mean(values):.3f} ± {st.stdev(values):.3f}"


@pytest.mark.parametrize("scale", ["eval", "train"])
def test_section_4_4_dropout_rows(tmp_path, scale):
    over = {"train.threads": 1, **{f"model.layers[{i}].scale": scale for i in DROPOUT_LAYERS}}
    runs = regbench.train(
        ROOT / "configs/dlfs/digits_overfit_dropout.yaml", out=tmp_path, seeds=3, quiet=True, overrides=over
    )
    last = [list(read_jsonl(r.path / "metrics.jsonl"))[-1] for r in runs]
    train = [m["train_eval_acc"] for m in last]
    held = [m["val_acc"] for m in last]
    now = [
        str(last[0]["epoch"]),
        fmt(train),
        fmt(held),
        fmt([a - b for a, b in zip(train, held, strict=True)]),
        fmt([r.summary["test_acc"] for r in runs]),
    ]
    documented = row_of(f"regbench, `scale: {scale}`")[2:]
    assert now == documented, f"EXPERIMENTS.md 4.4, dropout `scale: {scale}`: the document says {documented}, now {now}"
