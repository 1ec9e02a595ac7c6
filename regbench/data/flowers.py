"""The public 5-class flower photos (TensorFlow's `flower_photos.tgz`): `<root>/flower_photos/<class>/*.jpg`.

3,670 colour photos of daisy, dandelion, roses, sunflowers and tulips, fed to the model as the book's
flowers set: resized to `data.resolution` (96×96 as the course notebook) with raw 0–255 pixels.
`regbench data fetch flowers` (or `data.download: true`) downloads the archive, checks its pinned
SHA-256 and extracts it safely. `data.path` points at another tree of the same layout instead (the
book's own `data/chap05/flowers`, whose folders are `daisy, dandelion, rose, sunflower, tulip`).
"""

from __future__ import annotations

from pathlib import Path

from ..config import DataConfig
from .base import DATASETS, Arrays, DataInfo, DatasetEntry, Head, files_error
from .fetch import fetch_archive
from .imagefolder import has_images, image_shape, list_dir, load_images, scan_classes

URL = "https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz"
# SHA-256 of that archive (228,813,984 bytes) as TensorFlow Datasets pins it in
# tensorflow_datasets/url_checksums/tf_flowers.txt; not computed here (no network when this was written)
SHA256 = "4c54ace7911aaffe13a365c34f650e71dd5bf1be0a58b464e5a7183e3e595d9c"
FOLDER = "flower_photos"  # the archive's top folder, so `tar xzf flower_photos.tgz -C data` also works
CLASSES = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]


def tree(cfg: DataConfig) -> Path:
    return Path(cfg.path) if cfg.path else Path(cfg.root) / FOLDER


def cache_parent(cfg: DataConfig) -> Path:
    """The decode cache sits in data.root, or beside a tree given as data.path (never inside it)."""
    return tree(cfg).resolve().parent if cfg.path else Path(cfg.root)


def info(cfg: DataConfig) -> DataInfo:
    """Classes are the folder's sub-folders when present, else the archive's five (so validate works offline)."""
    return DataInfo(image_shape(cfg), [Head("flower", list_dir(tree(cfg)) or CLASSES)])


def missing(cfg: DataConfig) -> list[str]:
    return [] if has_images(tree(cfg), list_dir(tree(cfg))) else ["<class>/*.jpg"]


def fetch(cfg: DataConfig) -> str:
    return str(fetch_archive("flowers", URL, SHA256, Path(cfg.root), FOLDER))


def load(cfg: DataConfig) -> Arrays:
    if cfg.download and missing(cfg) and not cfg.path:
        fetch(cfg)
    if missing(cfg):
        how = (
            f"run `regbench data fetch flowers --root {cfg.root}` (or set data.download: true), or extract"
            f" flower_photos.tgz into {cfg.root}/"
        )
        if cfg.path:
            how = "point data.path at a folder with one sub-folder of .jpg photos per class"
        raise files_error("flowers", tree(cfg), missing(cfg), how)
    _, files, y = scan_classes(tree(cfg))
    return Arrays(load_images(tree(cfg), files, cfg, cache_parent(cfg), "flowers"), y, scale=255.0)


DATASETS.add(
    "flowers",
    DatasetEntry(
        "flowers",
        info,
        load,
        frozenset({"resolution", "channels", "download", "path"}),
        "flower photos (3,670 colour photos, 5 classes), TensorFlow's flower_photos.tgz",
        files=lambda cfg: f"{tree(cfg)}/<class>/*.jpg",
        missing=missing,
        normalize="none",  # the book feeds raw 0–255 pixels
        raw_pixels=True,
        fetch=fetch,
    ),
)
