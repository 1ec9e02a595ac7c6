"""Notebook conveniences of `regbench.train`: arrays held in memory instead of a data file, and a per-epoch
function that can never fail the run it watches."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..config import Config
from ..core.errors import DataError
from ..resolve import load_config


def safe_callback(fn: Callable[..., None]) -> Callable[..., None]:
    """A user's per-epoch function that cannot fail the run: its first exception is a warning, then it is off."""
    broken = []

    def call(*args: Any) -> None:
        if broken:
            return
        try:
            fn(*args)
        except Exception as e:
            import warnings

            broken.append(e)
            warnings.warn(f"on_epoch raised {e.__class__.__name__}: {e}; it is not called again", stacklevel=2)

    return call


def with_arrays(cfg: Config, x: Any, y: Any, x_test: Any, y_test: Any, classes: Any) -> Config:
    """`cfg` training on in-memory arrays (data set `arrays`), its split, limit, normalization and
    augmentation kept; with a test pair, `split: official`."""
    from ..data.memory import hold

    if x is None or y is None:
        raise DataError("train: give both x and y (and optionally x_test, y_test)")
    doc = cfg.to_dict()
    old = doc["data"]
    split = "official" if x_test is not None else (old["split"] if old["split"] != "official" else {})
    keep = {k: old[k] for k in ("seed", "limit", "normalize", "augment")}
    doc["data"] = {"name": "arrays", "path": hold(x, y, x_test, y_test, classes), "split": split, **keep}
    return load_config(doc)
