"""Image folders: decoded as the book does, once; later runs read the decode cache."""

from __future__ import annotations

import os

import datafiles as df
import numpy as np
import pytest
import torch
from PIL import Image

import regbench
from regbench.core.errors import DataError
from regbench.data import imagefolder, load_data
from regbench.data.cache import CACHE_DIR

CLASSES = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]


def flowers_cfg(root, **data):
    return regbench.load_config({"data": {"name": "flowers", "root": str(root), "resolution": [12, 10], **data}}).data


def test_decoding_matches_the_books_pil_resize(tmp_path):
    df.write_image_tree(tmp_path / "flower_photos", CLASSES, per_class=2)
    cfg = flowers_cfg(tmp_path, normalize="none", split={"train": 0.5, "val": 0.05})
    x = imagefolder.load_images(
        tmp_path / "flower_photos", ["daisy/img000.jpg"], cfg, tmp_path, "check"
    )  # (1, 3, 12, 10)
    with Image.open(tmp_path / "flower_photos" / "daisy" / "img000.jpg") as img:
        book = np.array(img.resize((10, 12)))  # the book's load_image_pixels: img.resize(resolution), (w, h)
    assert x.dtype == torch.uint8 and x.shape == (1, 3, 12, 10)
    assert np.array_equal(x[0].permute(1, 2, 0).numpy(), book)


def test_second_load_reads_the_cache(tmp_path, monkeypatch):
    df.write_image_tree(tmp_path / "flower_photos", CLASSES, per_class=3)
    first = load_data(flowers_cfg(tmp_path))
    (entry,) = (tmp_path / CACHE_DIR).iterdir()
    assert entry.suffix == ".pt" and "12x10x3" in entry.name

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(imagefolder, "decode_image", no_decoding)
    second = load_data(flowers_cfg(tmp_path))
    for split in ("train", "val", "test"):
        assert torch.equal(first.x[split], second.x[split]) and torch.equal(first.y[split], second.y[split])
    assert not [p for p in (tmp_path / CACHE_DIR).iterdir() if p.suffix == ".tmp"]


def test_a_changed_file_or_setting_makes_a_new_entry(tmp_path):
    tree = df.write_image_tree(tmp_path / "flower_photos", CLASSES, per_class=2)
    load_data(flowers_cfg(tmp_path))
    load_data(flowers_cfg(tmp_path, channels=1))  # another setting: its own entry
    df.write_jpeg(tree / "roses" / "img000.jpg", 4, seed=99)  # new content, new size/mtime
    os.utime(tree / "roses" / "img000.jpg", ns=(1, 1))
    load_data(flowers_cfg(tmp_path))
    assert len(list((tmp_path / CACHE_DIR).iterdir())) == 3


def test_a_damaged_cache_entry_is_rebuilt(tmp_path):
    df.write_image_tree(tmp_path / "flower_photos", CLASSES, per_class=2)
    first = load_data(flowers_cfg(tmp_path))
    (entry,) = (tmp_path / CACHE_DIR).iterdir()
    entry.write_bytes(b"half a file")
    again = load_data(flowers_cfg(tmp_path))
    assert torch.equal(first.x["train"], again.x["train"])
    assert torch.load(entry, weights_only=True).dtype == torch.uint8


def test_the_folder_set_caches_beside_the_tree_and_skips_hidden_folders(tmp_path):
    tree = df.write_image_tree(tmp_path / "pets", ["cat", "dog"], per_class=12)
    (tree / ".thumbnails").mkdir()
    (tree / "cat" / "notes.txt").write_text("not an image")
    cfg = regbench.load_config({"data": {"name": "folder", "root": str(tree), "resolution": [8, 8]}}).data
    ds = load_data(cfg)
    assert ds.info.heads[0].classes == ["cat", "dog"]
    assert sum(ds.size(s) for s in ("train", "val", "test")) == 24
    assert (tmp_path / CACHE_DIR).is_dir() and not (tree / CACHE_DIR).exists()


def test_an_unreadable_image_names_the_file(tmp_path):
    tree = df.write_image_tree(tmp_path / "flower_photos", CLASSES, per_class=2)
    (tree / "tulips" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"cannot read image \S+broken\.jpg .*; remove or replace the file"):
        load_data(flowers_cfg(tmp_path))
    assert not (tmp_path / CACHE_DIR).exists() or not list((tmp_path / CACHE_DIR).iterdir())
