"""Your own arrays in one `.npz` file at `data.path` (numpy.savez / savez_compressed).

Arrays: `x` images (N×H×W, N×H×W×C or N×C×H×W; uint8 or float), `y` integer labels (N), optional
`classes` (N class names, strings), optional `x_test`/`y_test` (a fixed test split: `data.split: official`).
Nothing is unpickled (allow_pickle=False). uint8 pixels stay uint8 until after splitting, and are divided
by 255 by default (`data.normalize: unit`); float arrays are fed as stored (`none`).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..config import DataConfig
from ..core.errors import ConfigError, DataError
from .base import DATASETS, Arrays, DataInfo, DatasetEntry, Head, files_error
from .pixels import chw, shape_images, to_nchw

if TYPE_CHECKING:
    import torch

HOW = "save one with numpy.savez(path, x=images, y=labels[, classes=names, x_test=..., y_test=...])"


def npz_file(cfg: DataConfig) -> Path:
    if cfg.path is None:
        raise ConfigError("data set 'npz' needs the file: set data.path to an .npz file", path="data.path")
    return Path(cfg.path)


def open_npz(file: Path):
    """numpy's lazy NpzFile (arrays are read on access), or a DataError naming the file."""
    try:
        return np.load(file, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"{file}: not a readable .npz file ({e}); {HOW}") from None


def array(npz, file: Path, name: str) -> np.ndarray:
    try:
        return npz[name]
    except KeyError:
        raise DataError(f"{file}: has no array '{name}' (it has {', '.join(npz.files)}); {HOW}") from None
    except ValueError as e:  # object arrays need pickle, which is refused
        raise DataError(f"{file}: array '{name}' cannot be read without pickle ({e}); store plain arrays") from None


def stored_shape(file: Path, name: str) -> tuple[int, ...]:
    """The shape of array `name` read from its .npy header only, so `validate` does not load the images."""
    try:
        with zipfile.ZipFile(file) as z, z.open(f"{name}.npy") as f:
            version = np.lib.format.read_magic(f)
            reader = {
                (1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0,
            }
            if version in reader:
                return tuple(reader[version](f)[0])
    except (KeyError, OSError, ValueError, zipfile.BadZipFile):
        pass
    with open_npz(file) as npz:  # unusual header version or a damaged file: the slow way, with its errors
        return tuple(array(npz, file, name).shape)


def labels(npz, file: Path, name: str, n: int) -> torch.Tensor:
    import torch

    y = array(npz, file, name)
    if y.ndim != 1 or len(y) != n or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{file}: '{name}' must be {n} integer labels, got {y.dtype} of shape {y.shape}")
    return torch.from_numpy(y.astype(np.int64)).unsqueeze(1)


def class_names(npz, file: Path) -> list[str]:
    if "classes" in npz.files:
        return [str(c) for c in array(npz, file, "classes").reshape(-1)]
    keys = ["y"] + (["y_test"] if "y_test" in npz.files else [])
    top = max(int(array(npz, file, k).max(initial=0)) for k in keys)
    return [str(i) for i in range(top + 1)]


def info(cfg: DataConfig) -> DataInfo:
    file = npz_file(cfg)
    if not file.is_file():
        raise files_error("npz", file.parent, [file.name], HOW)
    c, h, w = chw(stored_shape(file, "x"), f"{file}: x")
    h, w = cfg.resolution or (h, w)
    with open_npz(file) as npz:
        return DataInfo((cfg.channels or c, h, w), [Head("class", class_names(npz, file))])


def images(npz, file: Path, name: str, cfg: DataConfig) -> torch.Tensor:
    x = array(npz, file, name)
    if x.dtype != np.uint8:
        if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
            raise DataError(f"{file}: '{name}' must hold numbers (uint8 or float), got {x.dtype}")
        x = x.astype(np.float32)
    return shape_images(to_nchw(x, f"{file}: {name}").contiguous(), cfg.channels, cfg.resolution)


def load(cfg: DataConfig) -> Arrays:
    import torch

    file = npz_file(cfg)
    if not file.is_file():
        raise files_error("npz", file.parent, [file.name], HOW)
    with open_npz(file) as npz:
        x = images(npz, file, "x", cfg)
        y = labels(npz, file, "y", len(x))
        test = None
        if ("x_test" in npz.files) != ("y_test" in npz.files):
            raise DataError(f"{file}: has only one of x_test and y_test; store both or neither")
        if "x_test" in npz.files:
            xt = images(npz, file, "x_test", cfg)
            if xt.shape[1:] != x.shape[1:]:
                raise DataError(f"{file}: x_test images are {tuple(xt.shape[1:])}, x images {tuple(x.shape[1:])}")
            test = (xt, labels(npz, file, "y_test", len(xt)))
        scale = 255.0 if x.dtype == torch.uint8 else None
    return Arrays(x, y, test=test, scale=scale)


def missing(cfg: DataConfig) -> list[str]:
    return [] if cfg.path is not None and Path(cfg.path).is_file() else [cfg.path or "data.path (not set)"]


DATASETS.add(
    "npz",
    DatasetEntry(
        "npz",
        info,
        load,
        frozenset({"path", "resolution", "channels"}),
        "your arrays in an .npz file at data.path (x, y; optional classes, x_test, y_test)",
        files=lambda cfg: cfg.path or "data.path (an .npz file)",
        missing=missing,
        normalize="auto",  # uint8 pixels ÷255 (unit), float values as stored (none)
        official=True,  # when the file has x_test/y_test
    ),
)
