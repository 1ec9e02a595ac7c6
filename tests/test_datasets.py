"""Every file-based data set trains one short epoch through `regbench train`, from its real on-disk format."""

from __future__ import annotations

import json
import re
import urllib.error

import datafiles as df
import numpy as np
import pytest
import torch
import yaml
from conftest import write
from typer.testing import CliRunner

import regbench
from regbench.cli.main import app
from regbench.core.errors import ConfigError, DataError
from regbench.data import load_data
from regbench.rundir import load_run

runner = CliRunner()
LAYERS = [["conv", {"ksize": 3, "chn": 4}], ["max", {"stride": 2}], 8]
FLOWERS = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]


def config(tmp_path, data: dict, name: str = "run", **train) -> str:
    """A YAML config for one quiet epoch on `data`; returns its path."""
    text = yaml.safe_dump(
        {
            "name": name,
            "data": data,
            "model": {"layers": LAYERS},
            "train": {"epochs": 1, "batch_size": 10, "show": 2, **train},
        }
    )
    return str(write(tmp_path / f"{name}.yaml", text))


def train_cli(tmp_path, data: dict, *args: str):
    """`regbench train` on `data` through the CLI; returns (result, run)."""
    out = tmp_path / "runs"
    res = runner.invoke(app, ["train", config(tmp_path, data), "--out", str(out), "--lang", "en", *args])
    assert res.exit_code == 0, res.output
    (path,) = out.iterdir()
    return res, load_run(path)


def write_set(name: str, tmp_path) -> dict:
    """Write set `name` in its real format under tmp_path; returns the `data` section that trains on it."""
    root = tmp_path / "data"
    if name == "mnist":
        df.write_mnist(root)
    elif name == "fashion_mnist":
        df.write_mnist(root, "FashionMNIST")
    elif name == "cifar10":
        df.write_cifar10(root)
    elif name == "cifar100":
        df.write_cifar100(root)
    elif name == "flowers":
        df.write_image_tree(root / "flower_photos", FLOWERS, per_class=10)
    elif name == "office31":
        df.write_office31(root)
    elif name == "folder":
        df.write_image_tree(root / "mine", ["cats", "dogs"], per_class=15)
        return {"name": "folder", "root": str(root / "mine"), "resolution": [16, 16]}
    elif name == "npz":
        df.write_npz(tmp_path / "set.npz")
        return {"name": "npz", "path": str(tmp_path / "set.npz")}
    small = {"resolution": [16, 16]} if name in ("flowers", "office31") else {}
    return {"name": name, "root": str(root), **small}


@pytest.mark.parametrize(
    "name, shape",
    [
        ("mnist", [1, 28, 28]),
        ("fashion_mnist", [1, 28, 28]),
        ("cifar10", [3, 32, 32]),
        ("cifar100", [3, 32, 32]),
        ("flowers", [3, 16, 16]),
        ("office31", [3, 16, 16]),
        ("folder", [3, 16, 16]),
        ("npz", [3, 8, 8]),
    ],
)
def test_each_set_trains_one_epoch_from_its_files(tmp_path, name, shape):
    res, run = train_cli(tmp_path, write_set(name, tmp_path))
    assert run.status == "completed" and run.summary["input_shape"] == shape
    assert run.summary["data"]["train"] > 0 and run.summary["data"]["test"] > 0
    assert "Model run test report: accuracy = " in res.output and "estimated distribution" in res.output


def test_office31_has_two_heads_reported_in_the_books_form(tmp_path):
    res, run = train_cli(tmp_path, write_set("office31", tmp_path), "--lang", "ko")
    assert [h["name"] for h in run.summary["heads"]] == ["domain", "object"]
    assert run.summary["heads"][0]["classes"] == ["amazon", "dslr", "webcam"]
    assert run.summary["heads"][1]["classes"] == ["bike", "mug", "pen"]
    out = res.output.splitlines()
    assert any(
        re.fullmatch(r"    Epoch 1: cost=\d+\.\d{3}, accuracy=\d\.\d{3}\+\d\.\d{3}/\d\.\d{3}\+\d\.\d{3} .*", ln)
        for ln in out
    )
    assert any(re.fullmatch(r"Model run test report: accuracy = \d\.\d{3}\+\d\.\d{3}, \(\d+ secs\)", ln) for ln in out)
    assert "[ 도메인 추정결과 ]" in out and "[ 상품 추정결과 ]" in out
    assert isinstance(run.summary["test_acc"], list) and len(run.summary["test_acc"]) == 2
    assert len(run.metrics[0]["train_acc"]) == 2 and len(run.metrics[0]["val_acc"]) == 2


def test_office31_labels_follow_the_books_sorted_walk(tmp_path):
    df.write_office31(tmp_path, domains=("webcam", "amazon"), objects=("pen", "bike"), per=2)
    cfg = regbench.load_config({"data": {"name": "office31", "root": str(tmp_path), "resolution": [8, 8]}})
    from regbench.data import office31

    files, y = office31.scan(cfg.data)
    assert files[0] == "amazon/images/bike/frame_0000.jpg" and y[0].tolist() == [0, 0]
    assert files[-1] == "webcam/images/pen/frame_0001.jpg" and y[-1].tolist() == [1, 1]


def test_official_split_sizes_and_limit(tmp_path):
    df.write_mnist(tmp_path, n_train=60, n_test=20)
    base = {"name": "mnist", "root": str(tmp_path)}
    official = load_data(regbench.load_config({"data": {**base, "split": "official"}}).data)
    assert official.size("test") == 20 and official.size("train") + official.size("val") == 60
    pooled = load_data(regbench.load_config({"data": base}).data)  # the book's ratios over all 80
    assert (pooled.size("train"), pooled.size("val"), pooled.size("test")) == (60, 4, 16)
    limited = load_data(regbench.load_config({"data": {**base, "split": "official", "limit": {"test": 10}}}).data)
    assert limited.size("test") == 10 and sorted(limited.y["test"][:, 0].tolist()) == list(range(10))
    df.write_cifar10(tmp_path, per_batch=10, n_test=20)
    cifar = load_data(
        regbench.load_config({"data": {"name": "cifar10", "root": str(tmp_path), "split": "official"}}).data
    )
    assert cifar.size("test") == 20 and cifar.size("train") + cifar.size("val") == 50


def test_pixels_arrive_as_stored_and_normalized_by_default(tmp_path):
    df.write_mnist(tmp_path)
    raw = df.class_images(df.labels_for(60, 10), 28, 28, 1, 1)  # the official training part
    ds = load_data(regbench.load_config({"data": {"name": "mnist", "root": str(tmp_path), "split": "official"}}).data)
    assert ds.x["train"].dtype == torch.float32 and float(ds.x["train"].max()) <= 1.0  # unit: ÷255
    seen = torch.cat([ds.x["train"], ds.x["val"]]).double().sum() * 255
    assert float(seen) == pytest.approx(float(raw.sum()), rel=1e-5)
    df.write_image_tree(tmp_path / "flower_photos", FLOWERS, per_class=4)
    fl = load_data(regbench.load_config({"data": {"name": "flowers", "root": str(tmp_path)}}).data)
    assert fl.x["train"].shape[1:] == (3, 96, 96) and float(fl.x["train"].max()) > 100  # raw 0–255, as the book


def test_channels_and_resolution(tmp_path):
    df.write_mnist(tmp_path)
    df.write_cifar10(tmp_path)
    mnist = load_data(
        regbench.load_config(
            {"data": {"name": "mnist", "root": str(tmp_path), "channels": 3, "resolution": [16, 12]}}
        ).data
    )
    assert mnist.x["train"].shape[1:] == (3, 16, 12)
    assert torch.equal(mnist.x["train"][:, 0], mnist.x["train"][:, 2])
    cifar = load_data(regbench.load_config({"data": {"name": "cifar10", "root": str(tmp_path), "channels": 1}}).data)
    assert cifar.x["train"].shape[1:] == (1, 32, 32)


@pytest.mark.parametrize("layout, shape", [("NHWC", [3, 8, 8]), ("NCHW", [3, 8, 8]), ("NHW", [1, 8, 8])])
def test_npz_layouts_and_class_names(tmp_path, layout, shape):
    path = df.write_npz(tmp_path / "a.npz", layout=layout, n_classes=3, test=12)
    cfg = regbench.load_config({"data": {"name": "npz", "path": str(path), "split": "official"}})
    ds = load_data(cfg.data)
    assert list(ds.x["train"].shape[1:]) == shape and ds.size("test") == 12
    assert ds.info.heads[0].classes == ["0", "1", "2"]
    named = df.write_npz(tmp_path / "b.npz", n_classes=3, classes=np.array(["ant", "bee", "cat"]))
    info = load_data(regbench.load_config({"data": {"name": "npz", "path": str(named)}}).data).info
    assert info.heads[0].classes == ["ant", "bee", "cat"]


def test_npz_errors_are_one_line(tmp_path):
    floats = tmp_path / "f.npz"
    np.savez(floats, x=np.random.rand(30, 8, 8).astype(np.float32), y=np.arange(30) % 3)
    with pytest.raises(ConfigError, match=r"data.normalize: unit needs pixels with a known maximum"):
        load_data(regbench.load_config({"data": {"name": "npz", "path": str(floats), "normalize": "unit"}}).data)
    no_y = tmp_path / "n.npz"
    np.savez(no_y, x=np.zeros((10, 8, 8), np.uint8))
    with pytest.raises(DataError, match=r"has no array 'y' \(it has x\)"):
        load_data(regbench.load_config({"data": {"name": "npz", "path": str(no_y)}}).data)
    pickled = tmp_path / "p.npz"
    np.savez(pickled, x=np.zeros((10, 8, 8), np.uint8), y=np.zeros(10, int), classes=np.array([object()] * 1))
    with pytest.raises(DataError, match="cannot be read without pickle"):
        load_data(regbench.load_config({"data": {"name": "npz", "path": str(pickled)}}).data)
    bad = tmp_path / "b.npz"
    np.savez(bad, x=np.zeros((10, 8, 8), np.uint8), y=np.arange(10), classes=np.array(["a", "b"]))
    with pytest.raises(DataError, match=r"labels of head 'class' span 0…9 but it has 2 classes"):
        load_data(regbench.load_config({"data": {"name": "npz", "path": str(bad)}}).data)
    with pytest.raises(ConfigError, match=r"data.path: data set 'npz' needs the file"):
        regbench.load_config({"data": {"name": "npz"}})


@pytest.mark.parametrize(
    "data, expected",
    [
        (
            {"name": "mnist"},
            r"data set 'mnist': missing train-images-idx3-ubyte\[\.gz\], .* in \S+MNIST/raw; set data.download: true",
        ),
        ({"name": "cifar10"}, r"missing data_batch_1, .* and 3 more in \S+cifar-10-batches-py; "),
        (
            {"name": "flowers"},
            r"missing <class>/\*\.jpg in \S+flower_photos; run `regbench data fetch flowers --root ",
        ),
        (
            {"name": "office31"},
            r"missing <domain>/images/<object>/\*\.jpg in \S+office31; download Office-31",
        ),
        ({"name": "folder"}, r"data set 'folder': missing <class>/<image> in "),
    ],
)
def test_missing_files_are_one_line_exit_2_and_no_run(tmp_path, data, expected):
    out = tmp_path / "runs"
    cfg = config(tmp_path, {**data, "root": str(tmp_path / "empty")})
    res = runner.invoke(app, ["train", cfg, "--out", str(out)])
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert re.search(expected, lines[0]), lines[0]
    assert not out.exists()


def test_download_failure_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    def offline(root, train=True, download=False):
        (tmp_path / "data" / ".partial").mkdir(parents=True, exist_ok=True)
        raise RuntimeError("Error downloading x.gz:\nTried https://mirror/, got:\n<urlopen error offline>\n")

    monkeypatch.setattr(tvd, "MNIST", offline)
    cfg = config(tmp_path, {"name": "mnist", "root": str(tmp_path / "data"), "download": True})
    res = runner.invoke(app, ["train", cfg, "--out", str(tmp_path / "runs")])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert "download into" in res.output and "failed (<urlopen error offline>)" in res.output
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [".partial"]  # only what the fake made
    assert not (tmp_path / "runs").exists()


def test_download_through_torchvision_moves_finished_files_into_place(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    calls = []

    def fake_mnist(root, train=True, download=False):  # torchvision writes MNIST/raw under the root it gets
        calls.append((root, train, download))
        if train:
            df.write_mnist(root)

    monkeypatch.setattr(tvd, "MNIST", fake_mnist)
    _, run = train_cli(tmp_path, {"name": "mnist", "root": str(tmp_path / "data"), "download": True})
    assert run.status == "completed" and all(d for _, _, d in calls) and len(calls) == 2
    assert calls[0][0] != tmp_path / "data"  # a temporary folder, renamed into place when complete
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["MNIST"]
    assert len(list((tmp_path / "data" / "MNIST" / "raw").iterdir())) == 4


def test_torchvision_download_error_reaches_the_user(monkeypatch, tmp_path):
    import torchvision.datasets as tvd

    def refused(root, train=True, download=False):
        raise urllib.error.URLError("no route")

    monkeypatch.setattr(tvd, "CIFAR10", refused)
    res = runner.invoke(app, ["data", "fetch", "cifar10", "--root", str(tmp_path)])
    assert res.exit_code == 2 and "error: data set 'cifar10': download into" in res.output
    assert "<urlopen error no route>" in res.output and list(tmp_path.iterdir()) == []


def test_keys_a_set_does_not_read_are_errors(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"data.path: 'path' is not used by data set 'mnist' \(only by: flowers, npz, arrays, office31\)",
    ):
        regbench.load_config({"data": {"name": "mnist", "path": "x.npz"}})
    with pytest.raises(ConfigError, match=r"data.split: data set 'flowers' has no official test split"):
        regbench.load_config({"data": {"name": "flowers", "split": "official"}})
    with pytest.raises(ConfigError, match=r"data.channels: must be 1 or 3, got 2"):
        regbench.load_config({"data": {"name": "mnist", "channels": 2}})
    with pytest.raises(ConfigError, match=r"data.split: expected mapping or official"):
        regbench.load_config({"data": {"name": "mnist", "split": "offical"}})
    with pytest.raises(ConfigError, match=r"data.download: 'download' is not used by data set 'office31'"):
        regbench.load_config({"data": {"name": "office31", "download": True}})


def test_validate_and_show_work_without_the_files(tmp_path):
    cfg = config(tmp_path, {"name": "office31", "root": str(tmp_path / "none"), "resolution": [96, 96]})
    res = runner.invoke(app, ["validate", cfg])
    assert res.exit_code == 0 and "(office31, 3+31 classes" in res.output
    res = runner.invoke(app, ["show", cfg, "--set", "data.name=flowers"])
    assert res.exit_code == 0 and "96×96×3" in res.output


def test_resolved_config_with_new_keys_round_trips(tmp_path):
    data = {
        "name": "cifar10",
        "root": str(tmp_path),
        "split": "official",
        "normalize": "center",
        "augment": ["hflip"],
    }
    cfg = regbench.load_config({"data": data})
    assert regbench.load_config(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_datasets_table_lists_every_set_and_what_is_present(tmp_path):
    from regbench.data import DATASETS
    from regbench.data.catalog import catalog

    df.write_mnist(tmp_path)
    df.write_office31(tmp_path)
    rows = {r["name"]: r for r in catalog(str(tmp_path))}
    assert list(rows) == DATASETS.names()
    assert rows["mnist"]["present"] == "yes" and rows["cifar10"]["present"] == "no"
    assert rows["digits"]["present"] == "built in" and rows["office31"]["classes"] == "3+3 (domain, object)"
    assert rows["flowers"]["shape"] == (3, 96, 96) and rows["npz"]["shape"] is None
    assert rows["cifar10"]["files"].startswith(str(tmp_path / "cifar-10-batches-py"))
    res = CliRunner().invoke(app, ["datasets", "--root", str(tmp_path)], env={"COLUMNS": "250"})
    assert res.exit_code == 0 and all(name in res.output for name in DATASETS.names())
    assert "28×28×1" in res.output and "96×96×3" in res.output and "3+3 (domain, object)" in res.output
