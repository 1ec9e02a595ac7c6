"""Image-folder trees (flowers, Office-31, any `folder`): listing, decoding as the book does, and the cache.

The book's loaders walk sorted folders (`list_dir` sorts), open each photo with PIL, `img.resize(resolution)`
(PIL's default filter) and feed the raw 0–255 pixels. Here each tree is decoded once on a few threads
(PIL releases the GIL while decoding and resizing), stored as one uint8 tensor in the decode cache, and
read back from there by every later run with the same files and settings.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..config import DataConfig
from ..core.errors import DataError
from .cache import CACHE_DIR, cache_key, read_cached, write_cached

if TYPE_CHECKING:
    import torch

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
DEFAULT_RESOLUTION = [96, 96]  # the course notebook: FlowersDataset([96, 96], [96, 96, 3])
DEFAULT_CHANNELS = 3  # the book's image_shape = resolution + [3]


def list_dir(path: Path) -> list[str]:
    """Sorted visible sub-folders (the book's list_dir sorts; hidden ones such as the cache are skipped)."""
    try:
        return sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def list_images(folder: Path) -> list[str]:
    """Sorted image files of one folder (the book skips anything that is not a .jpg)."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    return sorted(
        p.name for p in entries if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def image_shape(cfg: DataConfig) -> tuple[int, int, int]:
    """(C, H, W) the images are decoded to: data.channels × data.resolution, 3 × 96 × 96 by default."""
    h, w = cfg.resolution or DEFAULT_RESOLUTION
    return (cfg.channels or DEFAULT_CHANNELS, h, w)


def decode_image(path: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    """One image as an H×W×C uint8 array: converted to RGB or grey, then resized as the book's
    `img.resize(resolution)` (PIL's default filter, bicubic for photos). `size` is (h, w)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img = img.convert("RGB" if channels == 3 else "L").resize((size[1], size[0]))
            arr = np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot read image {path} ({e}); remove or replace the file") from None
    return arr if arr.ndim == 3 else arr[:, :, None]


def decode_all(tree: Path, files: list[str], shape: tuple[int, int, int]) -> torch.Tensor:
    """Decode `files` (relative to `tree`) into one (N, C, H, W) uint8 tensor, on a few threads."""
    import torch

    c, h, w = shape
    out = np.empty((len(files), h, w, c), dtype=np.uint8)

    def one(i: int) -> None:
        out[i] = decode_image(tree / files[i], (h, w), c)

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(one, range(len(files))))
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def load_images(tree: Path, files: list[str], cfg: DataConfig, cache_dir: Path, tag: str) -> torch.Tensor:
    """The decoded images of `files`, from the decode cache in `cache_dir` when it has them."""
    shape = image_shape(cfg)
    key = cache_key(tree, files, list(shape[1:]), shape[0])
    entry = cache_dir / CACHE_DIR / f"{tag}-{shape[1]}x{shape[2]}x{shape[0]}-{key}.pt"
    x = read_cached(entry)
    if x is not None and tuple(x.shape) == (len(files), *shape):
        return x
    x = decode_all(tree, files, shape)
    write_cached(entry, x)
    return x


def scan_classes(tree: Path) -> tuple[list[str], list[str], torch.Tensor]:
    """A one-level tree `tree/<class>/<image>`: sorted class names, relative files, labels (N, 1)."""
    import torch

    classes = list_dir(tree)
    files: list[str] = []
    labels: list[int] = []
    for i, name in enumerate(classes):
        found = list_images(tree / name)
        files += [f"{name}/{f}" for f in found]
        labels += [i] * len(found)
    return classes, files, torch.tensor(labels, dtype=torch.long).reshape(-1, 1)


def has_images(tree: Path, classes: list[str]) -> bool:
    """Whether any class folder holds an image (cheap: stops at the first that does)."""
    return any(list_images(tree / c) for c in classes)
