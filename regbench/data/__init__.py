"""Data sets: a registry of loaders, and the book's seeded train/validation/test split.

A loader returns every sample as float32 `x` (N, C, H, W) or (N, F) and int64 `y` (N, heads); `load_data`
splits them (stratified, seeded by `data.seed`) and applies `data.limit`. `DataInfo` is the cheap
metadata (input shape, heads and class names) that `validate` and `show` need without loading anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..config import DataConfig
from ..errors import ConfigError
from ..registry import Registry
from .split import split_indices, stratified_take

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Head:
    """One output head: its name and its class names (the book's target_names)."""

    name: str
    classes: list[str]


@dataclass(frozen=True)
class DataInfo:
    input_shape: tuple[int, ...]  # (C, H, W) or (F,)
    heads: list[Head]

    @property
    def head_sizes(self) -> list[int]:
        return [len(h.classes) for h in self.heads]


@dataclass
class Arrays:
    """What a loader returns: all samples, or (with `test`) a fixed test split of its own."""

    x: torch.Tensor
    y: torch.Tensor
    test: tuple[torch.Tensor, torch.Tensor] | None = None


@dataclass
class Dataset:
    info: DataInfo
    x: dict[str, torch.Tensor] = field(default_factory=dict)  # split → float32 (N, C, H, W) or (N, F)
    y: dict[str, torch.Tensor] = field(default_factory=dict)  # split → int64 (N, heads)

    def size(self, split: str) -> int:
        return int(self.x[split].shape[0])


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    info: Callable[[DataConfig], DataInfo]
    load: Callable[[DataConfig], Arrays]
    keys: frozenset[str]  # data-set specific keys of DataConfig this set reads
    doc: str
    files: Callable[[DataConfig], str] = lambda cfg: "built in (no files)"


DATASETS: Registry[DatasetEntry] = Registry("data set")

SPECIFIC_KEYS = ("shape", "classes", "count")  # DataConfig keys that only some data sets read


def check_data_keys(cfg: DataConfig) -> None:
    """A data-set specific key set for a data set that does not read it is an error, not silently ignored."""
    entry = DATASETS[cfg.name]
    for key in SPECIFIC_KEYS:
        if getattr(cfg, key) is not None and key not in entry.keys:
            users = [n for n in DATASETS if key in DATASETS[n].keys]
            raise ConfigError(f"'{key}' is not used by data set '{cfg.name}' (only by: {', '.join(users)})", path=f"data.{key}")


def data_info(cfg: DataConfig) -> DataInfo:
    """Input shape and heads of the configured data set, without loading it."""
    return DATASETS[cfg.name].info(cfg)


def load_data(cfg: DataConfig) -> Dataset:
    """Load the configured data set and split it into train/val/test (book ratios, stratified, seeded)."""
    entry = DATASETS[cfg.name]
    info = entry.info(cfg)
    arrays = entry.load(cfg)
    ds = Dataset(info)
    if arrays.test is None:
        parts = split_indices(arrays.y, cfg.split.train, cfg.split.val, cfg.seed)
        for name in SPLITS:
            ds.x[name], ds.y[name] = arrays.x[parts[name]], arrays.y[parts[name]]
    else:  # the set's own test split; train/val come from the rest, in the same proportions
        ratio = cfg.split.train / (cfg.split.train + cfg.split.val)
        parts = split_indices(arrays.y, ratio, 1.0 - ratio, cfg.seed, book_rounding=False)
        ds.x["train"], ds.y["train"] = arrays.x[parts["train"]], arrays.y[parts["train"]]
        rest = torch.cat([parts["val"], parts["test"]])
        ds.x["val"], ds.y["val"] = arrays.x[rest], arrays.y[rest]
        ds.x["test"], ds.y["test"] = arrays.test
    for name in SPLITS:
        cap = getattr(cfg.limit, name)
        if cap is not None and ds.size(name) > cap:
            keep = stratified_take(ds.y[name], cap, cfg.seed)
            ds.x[name], ds.y[name] = ds.x[name][keep], ds.y[name][keep]
    if ds.size("train") == 0:
        raise ConfigError("the train split is empty; use a larger data set or split.train", path="data.split.train")
    return ds


# registration happens on import, as timm's models/__init__.py
from . import digits, synthetic  # noqa: E402,F401
