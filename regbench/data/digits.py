"""scikit-learn's bundled 8×8 digits: 1,797 images, 10 classes, no download (the default data set)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import DataConfig
from .base import DATASETS, Arrays, DataInfo, DatasetEntry, Head

if TYPE_CHECKING:
    pass


def info(cfg: DataConfig) -> DataInfo:
    return DataInfo((1, 8, 8), [Head("digit", [str(d) for d in range(10)])])


def load(cfg: DataConfig) -> Arrays:
    import torch
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1)  # pixels 0–16
    y = torch.tensor(d.target, dtype=torch.long).unsqueeze(1)
    return Arrays(x, y, scale=16.0)


DATASETS.add(
    "digits",
    DatasetEntry(
        "digits",
        info,
        load,
        frozenset(),
        "scikit-learn 8×8 digits (1,797 images, 10 classes), bundled",
        normalize="unit",  # ÷16 → 0–1, as the homework did
    ),
)
