"""Arrays held in this Python process (`regbench.train(cfg, x=..., y=...)` in a notebook): the data set
`arrays`, whose `data.path` is `memory:<hash of the arrays>`.

The arrays are what an .npz file would hold (numpy or torch): `x` images (N×H×W, N×H×W×C, N×C×H×W) or
feature vectors (N×F), `y` integer labels (N), optional `x_test`/`y_test` (then `data.split: official`)
and `classes`. Nothing is written: a run trained on them records the hash, and reading its data back
(report's sample figures, `resume`) works only in the process that still holds them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import DataConfig
from ..core.errors import DataError
from .base import DATASETS, Arrays, DataInfo, DatasetEntry, Head
from .npz import class_names, images, labels
from .pixels import chw

if TYPE_CHECKING:
    import torch

PREFIX = "memory:"
STORE: dict[str, Held] = {}


class Held(dict):
    """The arrays of one call, shaped like numpy's NpzFile (`.files`, `[name]`, a context manager)."""

    @property
    def files(self) -> list[str]:
        return list(self)

    def __enter__(self) -> Held:
        return self

    def __exit__(self, *exc: Any) -> bool:
        return False


def as_numpy(name: str, value: Any) -> np.ndarray:
    import torch

    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        out = np.asarray(value)
    except (TypeError, ValueError) as e:
        raise DataError(f"{name}: not an array ({e})") from None
    if out.dtype == object:
        raise DataError(f"{name}: must hold numbers, got objects")
    return out


def hold(x: Any, y: Any, x_test: Any = None, y_test: Any = None, classes: Any = None) -> str:
    """Keep the arrays in this process; returns their `data.path` (`memory:` + a hash of their bytes)."""
    if (x_test is None) != (y_test is None):
        raise DataError("arrays: give both x_test and y_test, or neither")
    named = {"x": x, "y": y, "x_test": x_test, "y_test": y_test, "classes": classes}
    held = Held({k: as_numpy(k, v) for k, v in named.items() if v is not None})
    if "classes" in held:
        held["classes"] = held["classes"].astype(str)
    digest = hashlib.sha256()
    for k, v in held.items():
        digest.update(f"{k}{v.dtype}{v.shape}".encode())
        digest.update(np.ascontiguousarray(v).tobytes())
    key = PREFIX + digest.hexdigest()[:16]
    STORE[key] = held
    return key


def held(cfg: DataConfig) -> Held:
    if cfg.path in STORE:
        return STORE[cfg.path]
    raise DataError(
        f"data set 'arrays': {cfg.path} are in-memory arrays of the Python process that trained with them "
        "(regbench.train(cfg, x=..., y=...)); this process does not hold them. Save them with numpy.savez "
        "and use data.name: npz to keep them"
    )


def _features(a: np.ndarray) -> bool:
    return a.ndim == 2


def info(cfg: DataConfig) -> DataInfo:
    arrays = held(cfg)
    x = arrays["x"]
    file = Path(str(cfg.path))
    if _features(x):
        shape: tuple[int, ...] = (int(x.shape[1]),)
    else:
        c, h, w = chw(x.shape, f"{cfg.path}: x")
        h, w = cfg.resolution or (h, w)
        shape = (cfg.channels or c, h, w)
    return DataInfo(shape, [Head("class", class_names(arrays, file))])


def _x(arrays: Held, name: str, cfg: DataConfig) -> torch.Tensor:
    import torch

    x = arrays[name]
    if _features(x):
        if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
            raise DataError(f"{cfg.path}: '{name}' must hold numbers, got {x.dtype}")
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return images(arrays, Path(str(cfg.path)), name, cfg)


def load(cfg: DataConfig) -> Arrays:
    import torch

    arrays = held(cfg)
    file = Path(str(cfg.path))
    x = _x(arrays, "x", cfg)
    y = labels(arrays, file, "y", len(x))
    test = None
    if "x_test" in arrays:
        xt = _x(arrays, "x_test", cfg)
        if xt.shape[1:] != x.shape[1:]:
            raise DataError(f"{cfg.path}: x_test samples are {tuple(xt.shape[1:])}, x samples {tuple(x.shape[1:])}")
        test = (xt, labels(arrays, file, "y_test", len(xt)))
    return Arrays(x, y, test=test, scale=255.0 if x.dtype == torch.uint8 else None)


def missing(cfg: DataConfig) -> list[str]:
    return [] if cfg.path in STORE else [str(cfg.path)]


DATASETS.add(
    "arrays",
    DatasetEntry(
        "arrays",
        info,
        load,
        frozenset({"path", "resolution", "channels"}),
        "arrays held in this Python process: regbench.train(cfg, x=..., y=...[, x_test=..., y_test=...])",
        files=lambda cfg: "in memory (regbench.train(..., x=, y=))",
        missing=missing,
        normalize="none",
        official=True,
    ),
)
