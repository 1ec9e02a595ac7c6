"""What `regbench datasets` and `regbench data fetch` show and do, as plain library functions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..config import DataConfig
from ..core.errors import ConfigError, DataError, RegbenchError
from .base import DATASETS


def catalog(root: str = "data") -> list[dict[str, Any]]:
    """One row per registered data set: name, input shape (C, H, W) or None when it comes from the files,
    classes per head, where its files go, and whether they are present."""
    rows = []
    for name in DATASETS:
        entry = DATASETS[name]
        cfg = DataConfig(name=name, root=root)
        try:
            info = entry.info(cfg)
            shape = info.input_shape
            heads = "+".join(str(len(h.classes)) for h in info.heads)
            if len(info.heads) > 1:
                heads += f" ({', '.join(h.name for h in info.heads)})"
        except RegbenchError:  # the shape or classes come from files that are not there (folder, npz)
            shape, heads = None, "from the files"
        present = "built in" if entry.built_in else ("no" if entry.missing(cfg) else "yes")
        rows.append(
            {
                "name": name,
                "shape": shape,
                "classes": heads,
                "files": entry.files(cfg),
                "present": present,
                "doc": entry.doc,
            }
        )
    return rows


def fetcher(name: str, root: str = "data") -> Callable[[], str]:
    """What downloads data set `name` into `root`, or the error saying why it cannot be downloaded."""
    if name not in DATASETS:
        raise ConfigError(DATASETS.unknown(name))
    entry = DATASETS[name]
    cfg = DataConfig(name=name, root=root)
    if entry.built_in:
        raise DataError(f"data set '{name}' is built in; there is nothing to fetch")
    if entry.fetch is None:
        fetchable = ", ".join(n for n in DATASETS if DATASETS[n].fetch)
        raise DataError(
            f"regbench cannot download '{name}'; put its files at {entry.files(cfg)} (it fetches: {fetchable})"
        )
    return lambda: entry.fetch(cfg)
