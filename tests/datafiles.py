"""Tiny data sets written in the real on-disk formats (no network): IDX .gz, CIFAR pickles, JPEG trees, npz.

Each class gets a distinct brightness pattern so one short epoch learns something, but tests only rely on
the files loading and training, not on accuracy.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image


def class_images(labels: np.ndarray, h: int, w: int, c: int, seed: int = 0) -> np.ndarray:
    """N×H×W×C uint8 images whose mean brightness and a bright row depend on the label."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 60, size=(len(labels), h, w, c), dtype=np.int64)
    for i, lab in enumerate(labels):
        x[i] += 20 * int(lab)
        x[i, int(lab) % h] += 120
    return np.clip(x, 0, 255).astype(np.uint8)


def labels_for(n: int, classes: int) -> np.ndarray:
    return np.arange(n) % classes


# ----------------------------------------------------------------------------------------------- IDX
def idx_bytes(a: np.ndarray) -> bytes:
    """MNIST's IDX format: 0x0000, type 0x08 (unsigned byte), ndim, big-endian sizes, then the data."""
    return bytes([0, 0, 8, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.astype(np.uint8).tobytes()


def write_mnist(root: Path, folder: str = "MNIST", n_train: int = 60, n_test: int = 20) -> Path:
    """torchvision's raw layout: root/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 1), ("t10k", n_test, 2)):
        y = labels_for(n, 10)
        x = class_images(y, 28, 28, 1, seed)[..., 0]
        (raw / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(x)))
        (raw / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(y)))
    return raw


# ----------------------------------------------------------------------------------------------- CIFAR
def write_cifar10(root: Path, per_batch: int = 10, n_test: int = 20) -> Path:
    """root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta} as pickled dicts."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = "airplane automobile bird cat deer dog frog horse ship truck".split()
    batches = [(f"data_batch_{i}", per_batch, i) for i in range(1, 6)] + [("test_batch", n_test, 9)]
    for name, n, seed in batches:
        y = labels_for(n, 10)
        x = class_images(y, 32, 32, 3, seed).transpose(0, 3, 1, 2).reshape(n, 3072)  # R, G, B planes
        entry = {
            "batch_label": name,
            "labels": y.tolist(),
            "data": x,
            "filenames": [f"{i}.png" for i in range(n)],
        }
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    meta = {"label_names": names, "num_cases_per_batch": per_batch, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def write_cifar100(root: Path, n_train: int = 100, n_test: int = 100) -> Path:
    """root/cifar-100-python/{train, test, meta} with fine and coarse labels."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
        y = labels_for(n, 100)
        x = class_images(y, 32, 32, 3, seed).transpose(0, 3, 1, 2).reshape(n, 3072)
        entry = {"fine_labels": y.tolist(), "coarse_labels": (y // 5).tolist(), "data": x}
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    meta = {
        "fine_label_names": [f"fine{i}" for i in range(100)],
        "coarse_label_names": [f"c{i}" for i in range(20)],
    }
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


# ----------------------------------------------------------------------------------------------- JPEG trees
def write_jpeg(path: Path, label: int, seed: int, size: tuple[int, int] = (24, 20)) -> None:
    """A small RGB JPEG (width × height `size`) whose colour depends on `label`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = class_images(np.array([label]), size[1], size[0], 3, seed)[0]
    Image.fromarray(img).save(path, quality=90)


def write_image_tree(tree: Path, classes: list[str], per_class: int = 6) -> Path:
    """tree/<class>/<i>.jpg: the flowers and `folder` layout."""
    for c, name in enumerate(classes):
        for i in range(per_class):
            write_jpeg(tree / name / f"img{i:03d}.jpg", c, seed=100 * c + i)
    return tree


def write_office31(
    root: Path, domains=("amazon", "dslr", "webcam"), objects=("bike", "mug", "pen"), per: int = 4
) -> Path:
    """root/office31/<domain>/images/<object>/*.jpg, the book's chapter 6 layout."""
    tree = root / "office31"
    for d, domain in enumerate(domains):
        for o, obj in enumerate(objects):
            for i in range(per):
                write_jpeg(
                    tree / domain / "images" / obj / f"frame_{i:04d}.jpg",
                    3 * d + o,
                    seed=d * 100 + o * 10 + i,
                )
    return tree


# ----------------------------------------------------------------------------------------------- npz
def in_layout(x: np.ndarray, layout: str) -> np.ndarray:
    """N×H×W×C images as `layout` (NHWC, NCHW or NHW: the first channel)."""
    return {"NHWC": x, "NCHW": x.transpose(0, 3, 1, 2), "NHW": x[..., 0]}[layout]


def write_npz(path: Path, n: int = 60, n_classes: int = 3, layout: str = "NHWC", test: int = 0, **extra) -> Path:
    """x (uint8 images in `layout`), y, any `extra` arrays, and `test` samples as x_test/y_test."""
    y = labels_for(n, n_classes)
    arrays = {"x": in_layout(class_images(y, 8, 8, 3, 5), layout), "y": y, **extra}
    if test:
        yt = labels_for(test, n_classes)
        arrays |= {"x_test": in_layout(class_images(yt, 8, 8, 3, 6), layout), "y_test": yt}
    np.savez(path, **arrays)
    return path
