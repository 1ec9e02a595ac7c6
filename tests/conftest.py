"""Shared fixtures: tiny configs on the synthetic and digits sets, trained in well under a second."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import regbench

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(2)

TINY_CNN = [["conv", {"ksize": 3, "chn": 4}], ["max", {"stride": 2}], 16]


def tiny(**over) -> regbench.Config:
    """A 2-epoch CNN on 120 synthetic 8×8 images; keyword overrides use dotted keys with '__' for '.'."""
    base = {
        "name": "tiny",
        "data": {"name": "synthetic", "count": 120, "classes": 3},
        "model": {"layers": TINY_CNN},
        "train": {"epochs": 2, "batch_size": 10, "show": 0, "threads": 1},  # pinned: identical metrics run to run
    }
    return regbench.load_config(base, overrides={k.replace("__", "."): v for k, v in over.items()})


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    return tmp_path / "runs"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
