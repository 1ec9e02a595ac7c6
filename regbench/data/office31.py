"""Office-31 (Saenko et al. 2010) as the book's chapter 6 reads it: `<root>/office31/<domain>/images/<object>/*.jpg`.

Every photo has two labels, its domain (amazon, dslr, webcam) and its object (31 office items), so the
model gets two output heads, `domain` then `object`; the loss is the sum of their cross-entropies and the
report prints both accuracies (`accuracy = 0.874+0.558`). Names are sorted as the book's `list_dir` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..config import DataConfig
from .base import DATASETS, Arrays, DataInfo, DatasetEntry, Head, files_error
from .imagefolder import image_shape, list_dir, list_images, load_images

if TYPE_CHECKING:
    import torch

FOLDER = "office31"  # the book: data/chap06/office31
DOMAINS = ["amazon", "dslr", "webcam"]
OBJECTS = (
    "back_pack bike bike_helmet bookcase bottle calculator desk_chair desk_lamp desktop_computer file_cabinet"
    " headphones keyboard laptop_computer letter_tray mobile_phone monitor mouse mug paper_notebook pen phone"
    " printer projector punchers ring_binder ruler scissors speaker stapler tape_dispenser trash_can"
).split()


def tree(cfg: DataConfig) -> Path:
    """`<data.root>/office31`, or the tree at data.path (the book's `data/chap06/office31`)."""
    return Path(cfg.path) if cfg.path else Path(cfg.root) / FOLDER


def cache_parent(cfg: DataConfig) -> Path:
    """The decode cache sits in data.root, or beside a tree given as data.path (never inside it)."""
    return tree(cfg).resolve().parent if cfg.path else Path(cfg.root)


def names(cfg: DataConfig) -> tuple[list[str], list[str]]:
    """Domains (folders with an `images` folder) and the sorted union of their object folders.

    The union keeps one object index across domains even where a domain lacks an object (the book takes
    each domain's own list and relies on all three having the same 31).
    """
    t = tree(cfg)
    domains = [d for d in list_dir(t) if (t / d / "images").is_dir()]
    objects = sorted({o for d in domains for o in list_dir(t / d / "images")})
    return domains, objects


def info(cfg: DataConfig) -> DataInfo:
    domains, objects = names(cfg)
    if not domains:  # files absent: the published set's names, so validate and show work offline
        domains, objects = DOMAINS, OBJECTS
    return DataInfo(image_shape(cfg), [Head("domain", domains), Head("object", objects)])


def scan(cfg: DataConfig) -> tuple[list[str], torch.Tensor]:
    """Relative image paths and their (domain, object) labels, in the book's sorted walk order."""
    import torch

    domains, objects = names(cfg)
    files: list[str] = []
    labels: list[tuple[int, int]] = []
    for d, domain in enumerate(domains):
        for o, obj in enumerate(objects):
            found = list_images(tree(cfg) / domain / "images" / obj)
            files += [f"{domain}/images/{obj}/{f}" for f in found]
            labels += [(d, o)] * len(found)
    return files, torch.tensor(labels, dtype=torch.long).reshape(-1, 2)


def missing(cfg: DataConfig) -> list[str]:
    domains, objects = names(cfg)
    t = tree(cfg)
    found = any(list_images(t / d / "images" / o) for d in domains for o in objects)
    return [] if found else ["<domain>/images/<object>/*.jpg"]


def load(cfg: DataConfig) -> Arrays:
    if missing(cfg):
        how = (
            f"download Office-31 (domain_adaptation_images.tar.gz) and extract it into {tree(cfg)}/ so that"
            f" {tree(cfg)}/amazon/images/back_pack/ holds .jpg files"
        )
        raise files_error("office31", tree(cfg), missing(cfg), how)
    files, y = scan(cfg)
    return Arrays(load_images(tree(cfg), files, cfg, cache_parent(cfg), "office31"), y, scale=255.0)


DATASETS.add(
    "office31",
    DatasetEntry(
        "office31",
        info,
        load,
        frozenset({"resolution", "channels", "path"}),
        "Office-31 (4,110 photos; two heads: 3 domains and 31 objects), the book's chapter 6 set",
        files=lambda cfg: f"{tree(cfg)}/<domain>/images/<object>/*.jpg",
        missing=missing,
        normalize="none",  # the book feeds raw 0–255 pixels
        raw_pixels=True,
    ),
)
