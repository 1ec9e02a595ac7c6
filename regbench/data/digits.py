"""scikit-learn's bundled 8×8 digits: 1,797 images, 10 classes, no download (the default data set)."""

from __future__ import annotations

from ..config import DataConfig
from .base import DATASETS, Arrays, DataInfo, DatasetEntry, Head


def info(cfg: DataConfig) -> DataInfo:
    return DataInfo((1, 8, 8), [Head("digit", [str(d) for d in range(10)])])


def load(cfg: DataConfig) -> Arrays:
    import torch

    pixels, target = read_digits()
    x = torch.tensor(pixels, dtype=torch.float32).view(-1, 1, 8, 8)  # pixels 0–16
    y = torch.tensor(target, dtype=torch.long).unsqueeze(1)
    return Arrays(x, y, scale=16.0)


def read_digits():
    """The (1797, 64) pixels and (1797,) labels of scikit-learn's digits.csv.gz, read straight from the
    installed package: importing scikit-learn for `load_digits` costs a training run of this size more
    than the training. Falls back to `load_digits` where the file is not where scikit-learn keeps it."""
    import gzip
    import importlib.util
    from pathlib import Path

    import numpy as np

    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    roots = spec.submodule_search_locations if spec is not None else None
    csv = Path(next(iter(roots))) / "datasets" / "data" / "digits.csv.gz" if roots else None
    if csv is not None and csv.is_file():
        with gzip.open(csv, "rt") as f:
            data = np.loadtxt(f, delimiter=",", dtype=np.float64)
        if data.ndim == 2 and data.shape[1] == 65:
            return data[:, :-1], data[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.data, d.target


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
