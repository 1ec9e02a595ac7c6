"""MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 in torchvision's on-disk layout under `data.root`.

torchvision's dataset classes name the files and download them (`data.download: true` or
`regbench data fetch NAME`); the files are then read directly (IDX, plain or .gz; CIFAR's pickled
batches through an unpickler that builds numpy arrays and nothing else), so a copy from any source
works and loading skips the per-item PIL round trip. Pixels stay uint8 until after splitting.
"""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..config import DataConfig
from ..core.errors import DataError
from .base import DATASETS, Arrays, DataInfo, DatasetEntry, Head, files_error
from .pixels import shape_images

if TYPE_CHECKING:
    import torch

IDX = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR10_CLASSES = "airplane automobile bird cat deer dog frog horse ship truck".split()
FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]  # torchvision's FashionMNIST.classes


@dataclass(frozen=True)
class VisionSet:
    name: str
    torchvision: str  # the torchvision.datasets class that downloads it
    folder: str  # torchvision's folder under data.root
    files: tuple[str, ...]  # train files first, then test files, then class names (CIFAR)
    shape: tuple[int, int, int]  # native (C, H, W)
    classes: list[str]  # names used when the files (and their meta data) are absent
    doc: str

    def where(self, cfg: DataConfig) -> Path:
        return Path(cfg.root) / self.folder


SETS = [
    VisionSet(
        "mnist",
        "MNIST",
        "MNIST/raw",
        IDX,
        (1, 28, 28),
        [str(d) for d in range(10)],
        "MNIST handwritten digits (70,000 28×28 grey images, 10 classes; official test split 10,000)",
    ),
    VisionSet(
        "fashion_mnist",
        "FashionMNIST",
        "FashionMNIST/raw",
        IDX,
        (1, 28, 28),
        FASHION_CLASSES,
        "Fashion-MNIST clothing (70,000 28×28 grey images, 10 classes; official test split 10,000)",
    ),
    VisionSet(
        "cifar10",
        "CIFAR10",
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta"),
        (3, 32, 32),
        CIFAR10_CLASSES,
        "CIFAR-10 (60,000 32×32 colour images, 10 classes; official test split 10,000)",
    ),
    VisionSet(
        "cifar100",
        "CIFAR100",
        "cifar-100-python",
        ("train", "test", "meta"),
        (3, 32, 32),
        [str(i) for i in range(100)],
        "CIFAR-100 (60,000 32×32 colour images, 100 fine classes; official test split 10,000)",
    ),
]


# ----------------------------------------------------------------------------------------------- files
def find(folder: Path, name: str, idx: bool) -> Path | None:
    """The file, or for IDX its .gz as the archives ship it (torchvision keeps both after a download)."""
    for candidate in (folder / name, folder / f"{name}.gz") if idx else (folder / name,):
        if candidate.is_file():
            return candidate
    return None


def missing(vs: VisionSet, cfg: DataConfig) -> list[str]:
    folder = vs.where(cfg)
    idx = vs.files == IDX
    return [name + ("[.gz]" if idx else "") for name in vs.files if find(folder, name, idx) is None]


def how_to_get(vs: VisionSet, cfg: DataConfig) -> str:
    return (
        f"set data.download: true or run `regbench data fetch {vs.name} --root {cfg.root}` on a machine with"
        f" internet, or copy torchvision's {vs.folder} files there"
    )


def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (MNIST's format: magic 0x0000 08 ndim, big-endian sizes, data)."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08" or not 1 <= raw[3] <= 3:
        raise DataError(f"{path}: not an IDX file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path}: truncated IDX file ({data.size} values for shape {dims}); fetch it again")
    return data.reshape(dims)


class ArrayUnpickler(pickle.Unpickler):
    """Unpickles CIFAR's batches: dicts, lists and numpy arrays only, so a data file cannot run code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store an array's bytes
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            out = ArrayUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
        raise DataError(f"{path}: not a CIFAR python batch ({e}); fetch it again") from None
    if not isinstance(out, dict):
        raise DataError(f"{path}: not a CIFAR python batch (a {type(out).__name__}, expected a dict)")
    return out


def cifar_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    d = read_pickle(path)
    labels = d.get("labels", d.get("fine_labels"))
    if "data" not in d or labels is None:
        raise DataError(f"{path}: CIFAR batch without 'data' and 'labels'/'fine_labels'")
    x = np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)  # rows are R, G, B planes of 32×32
    return torch.from_numpy(x), torch.as_tensor(np.asarray(labels, dtype=np.int64))


# ----------------------------------------------------------------------------------------------- entry
def class_names(vs: VisionSet, cfg: DataConfig) -> list[str]:
    """CIFAR's names come from its meta file when present (as torchvision reads them)."""
    if vs.files == IDX:
        return vs.classes
    meta = vs.where(cfg) / vs.files[-1]
    if not meta.is_file():
        return vs.classes
    d = read_pickle(meta)
    names = d.get("label_names", d.get("fine_label_names"))
    return [str(n) for n in names] if names else vs.classes


def info(vs: VisionSet, cfg: DataConfig) -> DataInfo:
    c, h, w = vs.shape
    c = cfg.channels or c
    h, w = cfg.resolution or (h, w)
    return DataInfo((c, h, w), [Head("class", class_names(vs, cfg))])


def fetch(vs: VisionSet, cfg: DataConfig) -> str:
    """Let torchvision download the set (its own URLs and checksums) into a temporary folder inside
    data.root, then move the finished files into place, so a failed download leaves no partial files."""
    folder = vs.where(cfg)
    if not missing(vs, cfg):
        return str(folder)
    import torchvision.datasets as tvd

    Path(cfg.root).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{vs.name}.fetch-", dir=cfg.root))
    try:
        try:
            getattr(tvd, vs.torchvision)(work, train=True, download=True)
            getattr(tvd, vs.torchvision)(work, train=False, download=True)
        except Exception as e:  # URLError, RuntimeError (checksum), OSError: all mean "no usable files"
            lines = [line.strip() for line in str(e).splitlines() if line.strip()]
            reason = lines[-1][:160] if lines else e.__class__.__name__
            raise DataError(
                f"data set '{vs.name}': download into {folder} failed ({reason}); "
                f"copy torchvision's {vs.folder} files there from a machine with internet"
            ) from None
        if not (work / vs.folder).is_dir():
            raise DataError(f"data set '{vs.name}': torchvision's download made no {vs.folder} folder")
        folder.mkdir(parents=True, exist_ok=True)
        for src in (work / vs.folder).iterdir():
            if src.is_file() and not (folder / src.name).exists():
                os.replace(src, folder / src.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return str(folder)


def load(vs: VisionSet, cfg: DataConfig) -> Arrays:
    import torch

    if cfg.download and missing(vs, cfg):
        fetch(vs, cfg)
    absent = missing(vs, cfg)
    if absent:
        raise files_error(vs.name, vs.where(cfg), absent, how_to_get(vs, cfg))
    folder = vs.where(cfg)
    if vs.files == IDX:
        x, y, xt, yt = (torch.from_numpy(read_idx(find(folder, n, True)).copy()) for n in IDX)
        x, xt = x.unsqueeze(1), xt.unsqueeze(1)
        y, yt = y.long(), yt.long()
    else:
        *train_files, test_file, _meta = vs.files
        parts = [cifar_batch(folder / n) for n in train_files]
        x, y = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        xt, yt = cifar_batch(folder / test_file)
    x, xt = (shape_images(t, cfg.channels, cfg.resolution) for t in (x, xt))
    return Arrays(x, y.unsqueeze(1), test=(xt, yt.unsqueeze(1)), scale=255.0)


def register(vs: VisionSet) -> None:
    DATASETS.add(
        vs.name,
        DatasetEntry(
            vs.name,
            lambda cfg: info(vs, cfg),
            lambda cfg: load(vs, cfg),
            frozenset({"resolution", "channels", "download"}),
            vs.doc,
            files=lambda cfg: f"{vs.where(cfg)}/ ({', '.join(vs.files)}{'[.gz]' if vs.files == IDX else ''})",
            missing=lambda cfg: missing(vs, cfg),
            normalize="unit",  # ÷255, as the DLFS homework and the Keras lecture feed them
            official=True,
            fetch=lambda cfg: fetch(vs, cfg),
        ),
    )


for _vs in SETS:
    register(_vs)
