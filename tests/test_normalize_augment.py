"""data.normalize (statistics from the training split only) and data.augment (per-sample, seeded, on device)."""

from __future__ import annotations

import datafiles as df
import pytest
import torch
from conftest import tiny

import regbench
from regbench.core.errors import ConfigError
from regbench.data import DataInfo, Dataset, Head, load_data
from regbench.data.augment import make_augment
from regbench.data.normalize import normalize


def dataset(train: torch.Tensor, test: torch.Tensor) -> Dataset:
    ds = Dataset(DataInfo(tuple(train.shape[1:]), [Head("class", ["a", "b"])]))
    ds.x = {"train": train.clone(), "val": train[:0].clone(), "test": test.clone()}
    return ds


def test_normalize_statistics_come_from_the_training_split():
    train = torch.stack([torch.full((2, 2, 2), 10.0), torch.full((2, 2, 2), 30.0)])  # 2 images, 2 channels
    train[:, 1] *= 2  # channel 1: 20 and 60
    test = torch.full((1, 2, 2, 2), 50.0)

    ds = dataset(train, test)
    assert normalize(ds, "none", 255.0, note_unscaled=False) == {"mode": "none"} and torch.equal(ds.x["test"], test)

    ds = dataset(train.to(torch.uint8), test.to(torch.uint8))
    normalize(ds, "unit", 255.0)
    assert ds.x["train"].dtype == torch.float32 and torch.allclose(ds.x["test"], test / 255)

    ds = dataset(train, test)
    stats = normalize(ds, "standardize", None)
    assert stats["shift"] == [20.0, 40.0] and stats["div"] == [10.0, 20.0]  # per channel, population std
    assert torch.allclose(ds.x["train"].mean((0, 2, 3)), torch.zeros(2))
    assert torch.allclose(ds.x["test"][0, :, 0, 0], torch.tensor([3.0, 0.5]))  # (50-20)/10, (50-40)/20

    ds = dataset(train, test)
    stats = normalize(ds, "center", None)
    assert stats["shift"] == [30.0] and stats["div"] == [30.0]  # one mean; max|x - mean| = |60 - 30|
    assert float(ds.x["train"].min()) == pytest.approx(-2 / 3) and float(ds.x["train"].max()) == 1.0
    assert torch.allclose(ds.x["test"], torch.full_like(test, 20 / 30))


def test_a_constant_channel_does_not_become_inf():
    ds = dataset(torch.ones(4, 1, 2, 2), torch.ones(1, 1, 2, 2))
    normalize(ds, "standardize", None)
    assert torch.isfinite(ds.x["test"]).all()


def test_digits_default_is_unit_as_the_homework(tmp_path):
    ds = load_data(regbench.load_config({}).data)
    assert float(ds.x["train"].max()) == 1.0 and float(ds.x["train"].min()) == 0.0
    raw = load_data(regbench.load_config({"data": {"normalize": "none"}}).data)
    assert float(raw.x["train"].max()) == 16.0 and torch.allclose(raw.x["train"] / 16, ds.x["train"])


@pytest.mark.parametrize(
    "spec",
    [
        ["hflip"],
        ["vflip"],
        [{"crop": {"size": 16, "padding": 4}}],
        [{"rotate": 15}],
        [{"affine": {"degrees": 10, "translate": [0.1, 0.2], "scale": [0.9, 1.1]}}],
        ["erase"],
        ["hflip", {"crop": 2}, {"rotate": {"degrees": 5}}, {"erase": {"p": 1.0}}],
    ],
)
def test_augment_keeps_shapes_and_is_deterministic_per_generator(spec):
    aug = make_augment(spec, (3, 16, 12) if "crop" not in str(spec) else (3, 16, 16))
    x = torch.rand(32, 3, 16, 16 if "crop" in str(spec) else 12)
    a = aug(x, torch.Generator().manual_seed(1))
    b = aug(x, torch.Generator().manual_seed(1))
    c = aug(x, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and a.dtype == x.dtype and torch.equal(a, b) and not torch.equal(a, c)


def test_each_sample_gets_its_own_draw():
    x = torch.arange(16.0).view(1, 1, 1, 16).repeat(64, 1, 4, 1)
    flipped = make_augment(["hflip"], (1, 4, 16))(x, torch.Generator().manual_seed(0))
    mirrored = (flipped == x.flip(-1)).flatten(1).all(1)
    assert 10 < int(mirrored.sum()) < 54 and torch.equal(flipped[~mirrored], x[~mirrored])
    cropped = make_augment([{"crop": {"padding": 3}}], (1, 4, 16))(x, torch.Generator().manual_seed(0))
    assert len({tuple(r) for r in cropped[:, 0, 0].tolist()}) > 3  # several offsets in one batch


def test_neutral_settings_change_nothing():
    x = torch.rand(8, 3, 10, 14)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(make_augment([{"crop": {"padding": 0}}], (3, 10, 14))(x, g), x)
    assert torch.allclose(make_augment([{"rotate": 0}], (3, 10, 14))(x, g), x, atol=1e-5)
    assert torch.equal(make_augment([{"hflip": 0.0}], (3, 10, 14))(x, g), x)
    assert make_augment(None, (3, 10, 14)) is None and make_augment([], (3, 10, 14)) is None


def test_erase_blanks_one_rectangle_within_the_area_bounds():
    x = torch.ones(50, 1, 20, 20)
    out = make_augment([{"erase": {"p": 1.0, "scale": [0.1, 0.2]}}], (1, 20, 20))(x, torch.Generator().manual_seed(3))
    blank = (out == 0).flatten(1).sum(1).float() / 400
    assert (blank > 0.05).all() and (blank < 0.3).all()


@pytest.mark.parametrize(
    "spec, message",
    [
        (
            ["mirror"],
            r"data.augment\[0\]: unknown augmentation 'mirror'; allowed: hflip, vflip, crop, rotate",
        ),
        ([{"hflip": {"p": 2}}], r"data.augment\[0\].hflip.p: must be in \[0, 1\], got 2"),
        (
            [{"crop": {"size": 32}}],
            r"data.augment\[0\].crop.size: crop size 32×32 must equal the input size 8×8",
        ),
        ([{"affine": 3}], r"data.augment\[0\]: affine needs a mapping of parameters"),
        ([{"hflip": {}, "vflip": {}}], r"data.augment\[0\]: expected a name or \{name: params\}"),
        ([{"rotate": {"angle": 3}}], r"data.augment\[0\].rotate.angle: unknown key 'angle'"),
    ],
)
def test_bad_augment_lists_are_config_errors(spec, message):
    with pytest.raises(ConfigError, match=message):
        tiny(data__augment=spec)


def test_augment_needs_images():
    with pytest.raises(ConfigError, match="augmentation needs images"):
        tiny(data__shape=[20], data__augment=["hflip"], model__layers=[8])


def test_augmented_training_is_reproducible_per_seed(runs):
    spec = ["hflip", {"crop": {"padding": 2}}, {"rotate": 10}, "erase"]

    def metrics(**over):
        run = regbench.train(tiny(data__augment=spec, **over), runs, quiet=True)
        return [{k: v for k, v in r.items() if not k.endswith("_s")} for r in run.metrics]

    first = metrics()
    assert metrics() == first and metrics(seed=7) != first
    plain = regbench.train(tiny(), runs, quiet=True)
    assert [r["train_loss"] for r in plain.metrics] != [r["train_loss"] for r in first]


def test_augment_trains_on_a_real_format_set(tmp_path, runs):
    df.write_cifar10(tmp_path)
    cfg = regbench.load_config(
        {
            "data": {
                "name": "cifar10",
                "root": str(tmp_path),
                "normalize": "center",
                "augment": ["hflip", {"crop": {"size": 32, "padding": 4}}, {"rotate": 15}],
            },
            "model": {"layers": [["conv", {"ksize": 3, "chn": 4}], ["max", {"stride": 4}], 8]},
            "train": {"epochs": 1, "show": 0},
        }
    )
    assert regbench.train(cfg, runs, quiet=True).status == "completed"
