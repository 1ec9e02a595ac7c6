"""Generated images with a learnable class signal, for tests and smoke runs (no files, any shape).

Each class of each head has a random prototype image; a sample is the sum of its classes' prototypes
plus pixel noise, shifted into roughly 0–1. `classes: [3, 31]` makes a two-head set like Office-31.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..config import DataConfig
from ..core.resources import check_fits
from .base import DATASETS, Arrays, DataInfo, DatasetEntry, Head

if TYPE_CHECKING:
    pass

DEFAULT_SHAPE = [8, 8, 1]  # H × W × C (book order)
DEFAULT_CLASSES = 10
DEFAULT_COUNT = 1000


def heads_of(cfg: DataConfig) -> list[int]:
    classes = DEFAULT_CLASSES if cfg.classes is None else cfg.classes
    return [classes] if isinstance(classes, int) else list(classes)


def check(cfg: DataConfig) -> None:
    from ..core.errors import ConfigError

    shape = DEFAULT_SHAPE if cfg.shape is None else cfg.shape
    if len(shape) not in (1, 3) or any(s < 1 for s in shape) or any(s > 4096 for s in shape):
        raise ConfigError(f"expected [H, W, C] (or [F]) with sizes 1–4096, got {shape}", path="data.shape")
    sizes = heads_of(cfg)
    if not sizes or any(not 2 <= c <= 10_000 for c in sizes):
        raise ConfigError(f"expected a class count (2–10000) or a list of them, got {cfg.classes}", path="data.classes")
    count = DEFAULT_COUNT if cfg.count is None else cfg.count
    if not 1 <= count <= 10_000_000:
        raise ConfigError(f"must be between 1 and 10000000, got {count}", path="data.count")
    # generating them holds the samples, their noise and the split copies at once: about 3× the float32 data
    check_fits(count * math.prod(shape) * 4 * 3, f"{count:,} samples of shape {shape}", "data.count")


def info(cfg: DataConfig) -> DataInfo:
    check(cfg)
    shape = DEFAULT_SHAPE if cfg.shape is None else cfg.shape
    torch_shape = (shape[2], shape[0], shape[1]) if len(shape) == 3 else (shape[0],)
    sizes = heads_of(cfg)
    names = ["class"] if len(sizes) == 1 else [f"head{i}" for i in range(len(sizes))]
    return DataInfo(torch_shape, [Head(n, [f"c{j}" for j in range(c)]) for n, c in zip(names, sizes, strict=True)])


def load(cfg: DataConfig) -> Arrays:
    import torch

    shape = info(cfg).input_shape
    count = DEFAULT_COUNT if cfg.count is None else cfg.count
    g = torch.Generator().manual_seed(cfg.seed + 7919)
    x = torch.randn((count, *shape), generator=g) * 0.5
    ys = []
    for classes in heads_of(cfg):
        protos = torch.randn((classes, *shape), generator=g)
        y = torch.randint(0, classes, (count,), generator=g)
        x += protos[y]
        ys.append(y)
    return Arrays(0.5 + 0.15 * x, torch.stack(ys, dim=1))


DATASETS.add(
    "synthetic",
    DatasetEntry(
        "synthetic",
        info,
        load,
        frozenset({"shape", "classes", "count"}),
        "generated images with a class signal (shape, classes, count), for tests and smoke runs",
    ),
)
