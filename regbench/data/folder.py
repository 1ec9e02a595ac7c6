"""Any image-folder tree at `data.root`: one sub-folder per class (sorted names), images inside.

Decoded as the book's flowers (PIL, `data.resolution`, default 96×96 RGB, raw 0–255 pixels) and cached
in `.regbench-cache/` beside the tree, so the tree itself is never written to.
"""

from __future__ import annotations

from pathlib import Path

from ..config import DataConfig
from .base import DATASETS, Arrays, DataInfo, DatasetEntry, Head, files_error
from .imagefolder import has_images, image_shape, list_dir, load_images, scan_classes

HOW = "point data.root at a folder with one sub-folder of images per class (e.g. cats/*.jpg, dogs/*.jpg)"


def tree(cfg: DataConfig) -> Path:
    return Path(cfg.root)


def missing(cfg: DataConfig) -> list[str]:
    return [] if has_images(tree(cfg), list_dir(tree(cfg))) else ["<class>/<image>"]


def info(cfg: DataConfig) -> DataInfo:
    if missing(cfg):  # the classes are the tree's own folders: nothing to say without images in them
        raise files_error("folder", tree(cfg), missing(cfg), HOW)
    return DataInfo(image_shape(cfg), [Head("class", list_dir(tree(cfg)))])


def load(cfg: DataConfig) -> Arrays:
    if missing(cfg):
        raise files_error("folder", tree(cfg), missing(cfg), HOW)
    _, files, y = scan_classes(tree(cfg))
    cache_parent = tree(cfg).resolve().parent
    return Arrays(load_images(tree(cfg), files, cfg, cache_parent, "folder"), y, scale=255.0)


DATASETS.add(
    "folder",
    DatasetEntry(
        "folder",
        info,
        load,
        frozenset({"resolution", "channels"}),
        "any image folder tree at data.root (one sub-folder per class)",
        files=lambda cfg: f"{tree(cfg)}/<class>/<image>",
        missing=missing,
        normalize="none",  # as the book's photo sets
        raw_pixels=True,
    ),
)
