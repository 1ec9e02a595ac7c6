"""The data-set registry and its types, and the book's seeded train/validation/test split.

A loader returns every sample as `x` (N, C, H, W) or (N, F), float32 or uint8 (8-bit images stay uint8
until after splitting, a quarter of the memory), and int64 `y` (N, heads); `load_data` splits them
(stratified, seeded by `data.seed`), applies `data.limit`, and normalizes with statistics of the training
split. `DataInfo` is the cheap metadata (input shape, heads and class names) that `validate` and `show`
need without loading anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import DataConfig, Split
from ..core.errors import ConfigError, DataError
from ..core.registry import Registry
from .augment import check_augment, parse_augment
from .normalize import normalize
from .split import split_indices, stratified_take

if TYPE_CHECKING:
    import torch

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
    """What a loader returns: its samples and, where the set has one, its official test split.

    With `data.split: official` the `test` pair is the test split; otherwise it joins the pool that the
    ratios split. `scale` is the format's full intensity (255 for 8-bit pixels, 16 for digits) that
    `normalize: unit` divides by; None where the format has no fixed maximum (float arrays).
    """

    x: torch.Tensor
    y: torch.Tensor
    test: tuple[torch.Tensor, torch.Tensor] | None = None
    scale: float | None = None


@dataclass
class Dataset:
    info: DataInfo
    x: dict[str, torch.Tensor] = field(default_factory=dict)  # split → float32 (N, C, H, W) or (N, F)
    y: dict[str, torch.Tensor] = field(default_factory=dict)  # split → int64 (N, heads)
    norm: dict = field(default_factory=dict)  # what data.normalize did: {mode, shift, div} (see normalize.py)

    def size(self, split: str) -> int:
        return int(self.x[split].shape[0])


def no_files(cfg: DataConfig) -> list[str]:
    return []


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    info: Callable[[DataConfig], DataInfo]
    load: Callable[[DataConfig], Arrays]
    keys: frozenset[str]  # data-set specific keys of DataConfig this set reads
    doc: str
    files: Callable[[DataConfig], str] = lambda cfg: "built in (no files)"  # where its files are expected
    missing: Callable[[DataConfig], list[str]] = no_files  # expected files that are absent
    normalize: str = "none"  # default of data.normalize; "auto": unit for 8-bit pixels, none for float values
    raw_pixels: bool = False  # the book feeds this set's raw 0–255 pixels: no "inputs look unscaled" note
    official: bool = False  # has its own test split (data.split: official)
    fetch: Callable[[DataConfig], str] | None = None  # downloads the files; returns where they went

    @property
    def built_in(self) -> bool:
        return self.missing is no_files


DATASETS: Registry[DatasetEntry] = Registry("data set")

# DataConfig keys that only some data sets read
SPECIFIC_KEYS = ("shape", "classes", "count", "path", "resolution", "channels", "download")


def files_error(name: str, where: Path | str, missing: list[str], how: str) -> DataError:
    """The one-line message for absent files: which files were expected where, and how to get them."""
    shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
    return DataError(f"data set '{name}': missing {shown} in {where}; {how}")


def check_labels(name: str, x: torch.Tensor, y: torch.Tensor, info: DataInfo) -> None:
    """One label row per sample, and no label outside its head's classes (that would crash the loss, or
    assert on CUDA); the message names the set and the head."""
    if len(x) != len(y) or y.dim() != 2 or y.shape[1] != len(info.heads):
        raise DataError(
            f"data set '{name}': {len(x)} samples but labels of shape {tuple(y.shape)}"
            f" (expected ({len(x)}, {len(info.heads)}))"
        )
    for h, head in enumerate(info.heads):
        if y.numel() and (int(y[:, h].min()) < 0 or int(y[:, h].max()) >= len(head.classes)):
            raise DataError(
                f"data set '{name}': labels of head '{head.name}' span {int(y[:, h].min())}…{int(y[:, h].max())}"
                f" but it has {len(head.classes)} classes"
            )


def check_data_keys(cfg: DataConfig) -> None:
    """A data-set specific key set for a data set that does not read it is an error, not silently ignored."""
    entry = DATASETS[cfg.name]
    for key in SPECIFIC_KEYS:
        if getattr(cfg, key) is not None and key not in entry.keys:
            users = [n for n in DATASETS if key in DATASETS[n].keys]
            raise ConfigError(
                f"'{key}' is not used by data set '{cfg.name}' (only by: {', '.join(users)})",
                path=f"data.{key}",
            )
    if cfg.split == "official" and not entry.official:
        with_test = [n for n in DATASETS if DATASETS[n].official]
        raise ConfigError(
            f"data set '{cfg.name}' has no official test split (sets that have one: {', '.join(with_test)});"
            " give ratios such as {train: 0.8, val: 0.05}",
            path="data.split",
        )
    parse_augment(cfg.augment)


def data_info(cfg: DataConfig) -> DataInfo:
    """Input shape and heads of the configured data set, without loading it."""
    info = DATASETS[cfg.name].info(cfg)
    check_augment(cfg.augment, info.input_shape)
    return info


def load_data(cfg: DataConfig) -> Dataset:
    """Load the configured data set, split it into train/val/test (book ratios, seeded, stratified unless
    `split.stratify` is false), cap each split at `data.limit`, and normalize it with statistics of the
    training split (npz's "auto": unit for uint8 pixels, none for float values)."""
    import torch

    entry = DATASETS[cfg.name]
    info = data_info(cfg)
    arrays = entry.load(cfg)
    check_labels(cfg.name, arrays.x, arrays.y, info)
    if arrays.test is not None:
        check_labels(cfg.name, *arrays.test, info)
    ds = Dataset(info)
    if cfg.split == "official":
        if arrays.test is None:
            raise ConfigError(
                f"data set '{cfg.name}' has no test split in its files; give ratios instead",
                path="data.split",
            )
        # train/val come from the official training part in the book's proportions (0.8 : 0.05)
        ratio = Split().train / (Split().train + Split().val)
        parts = split_indices(arrays.y, ratio, 1.0 - ratio, cfg.seed, book_rounding=False)
        ds.x["train"], ds.y["train"] = arrays.x[parts["train"]], arrays.y[parts["train"]]
        rest = torch.cat([parts["val"], parts["test"]])
        ds.x["val"], ds.y["val"] = arrays.x[rest], arrays.y[rest]
        ds.x["test"], ds.y["test"] = arrays.test
    else:
        x, y = arrays.x, arrays.y
        if arrays.test is not None:  # one pool, split by the ratios as the book's shuffle_data
            x, y = torch.cat([x, arrays.test[0]]), torch.cat([y, arrays.test[1]])
        parts = split_indices(y, cfg.split.train, cfg.split.val, cfg.seed, stratify=cfg.split.stratify)
        for name in SPLITS:
            ds.x[name], ds.y[name] = x[parts[name]], y[parts[name]]
    for name in SPLITS:
        cap = getattr(cfg.limit, name)
        if cap is not None and ds.size(name) > cap:
            keep = stratified_take(ds.y[name], cap, cfg.seed)
            ds.x[name], ds.y[name] = ds.x[name][keep], ds.y[name][keep]
    if ds.size("train") == 0:
        raise ConfigError("the train split is empty; use a larger data set or split.train", path="data.split.train")
    mode = cfg.normalize or entry.normalize
    if mode == "auto":
        mode = "unit" if arrays.scale is not None else "none"
    ds.norm = normalize(ds, mode, arrays.scale, note_unscaled=not entry.raw_pixels)
    return ds
