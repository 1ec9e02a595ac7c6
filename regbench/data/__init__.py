"""Data sets: a registry of loaders (`base`), one module per data set, registered on import.

Everything public lives in `base`; this package re-exports it, so `from regbench.data import load_data`
works. The data-set modules import `base`, never this package, so importing one of them alone is no cycle.
"""

from .base import (
    DATASETS,
    SPECIFIC_KEYS,
    SPLITS,
    Arrays,
    DataInfo,
    Dataset,
    DatasetEntry,
    Head,
    check_data_keys,
    check_labels,
    data_info,
    files_error,
    load_data,
    no_files,
)

# registration happens on import, as timm's models/__init__.py
from . import digits, flowers, folder, memory, npz, office31, synthetic, vision  # noqa: E402,F401  # isort: skip

__all__ = [
    "DATASETS",
    "SPECIFIC_KEYS",
    "SPLITS",
    "Arrays",
    "DataInfo",
    "Dataset",
    "DatasetEntry",
    "Head",
    "check_data_keys",
    "check_labels",
    "data_info",
    "files_error",
    "load_data",
    "no_files",
]
