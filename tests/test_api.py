"""The Python API: `regbench.train` (config, path or dict; seed groups), `Run.model()/predict()`, `compare`,
and errors that carry the CLI's one-line message."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import tiny, write
from typer.testing import CliRunner

import regbench
from regbench.cli.main import app
from regbench.data import load_data

runner = CliRunner()

TINY_YAML = """
name: api_tiny
data: {name: synthetic, count: 120, classes: 3}
model: {layers: [[conv, {ksize: 3, chn: 4}], [max, {stride: 2}], [dropout, {keep_prob: 0.8}], 16]}
train: {epochs: 2, show: 1, threads: 1}
"""


def results(run: regbench.Run):
    """Everything a run computed, without the wall-clock fields."""
    rows = [{k: v for k, v in r.items() if not k.endswith("_s")} for r in run.metrics]
    return rows, run.summary["test_acc"], run.summary["test_loss"], run.summary["params"]


def test_api_and_cli_train_give_identical_metrics(tmp_path):
    cfg = write(tmp_path / "c.yaml", TINY_YAML)
    api_run = regbench.train(cfg, tmp_path / "api", quiet=True)
    res = runner.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "cli"), "-q"])
    assert res.exit_code == 0, res.output
    (path,) = (tmp_path / "cli").iterdir()
    cli_run = regbench.load_run(path)
    assert results(api_run) == results(cli_run)
    assert api_run.config == cli_run.config and api_run.path.name.startswith("api_tiny-")


def test_train_takes_a_config_a_path_or_a_dict_with_overrides(tmp_path, capsys):
    path = write(tmp_path / "c.yaml", TINY_YAML)
    as_dict = yaml.safe_load(TINY_YAML)
    a = regbench.train(path, tmp_path / "r", overrides={"train.epochs": 1}, quiet=True)
    b = regbench.train(as_dict, tmp_path / "r", overrides=["train.epochs=1"], quiet=True)
    c = regbench.train(regbench.load_config(path), tmp_path / "r", overrides={"train.epochs": 1}, lang="en")
    assert a.config["train"]["epochs"] == b.config["train"]["epochs"] == c.config["train"]["epochs"] == 1
    assert results(a) == results(b) == results(c)
    assert "estimated distribution" in capsys.readouterr().out  # lang="en", not quiet
    assert isinstance(a, regbench.Run) and repr(a).startswith(f"Run('{a.path}', status=completed, test_acc=")
    assert a.history["epoch"] == [1] and a.history["val_acc"] == [a.metrics[0]["val_acc"]]


def test_seeds_train_a_group_that_compare_shows_as_one_row(tmp_path, capsys):
    runs = regbench.train(tiny(seed=5), tmp_path / "r", seeds=2)  # side by side, one stacked model
    out = capsys.readouterr().out
    assert "Model tiny train started (2 models side by side):" in out and "[seed 6] Model tiny test report" in out
    assert [r.summary["seed"] for r in runs] == [5, 6] and all(r.status == "completed" for r in runs)
    alone = regbench.train(tiny(seed=5), tmp_path / "one", quiet=True)
    assert [m["train_loss"] for m in runs[0].metrics] == pytest.approx(
        [m["train_loss"] for m in alone.metrics], rel=2e-4
    )
    one_by_one = regbench.train(tiny(seed=5), tmp_path / "r3", seeds=2, stack=1)
    out = capsys.readouterr().out
    assert "Seed 1/2 (seed 5):" in out and "Seed 2/2 (seed 6):" in out
    assert results(one_by_one[0]) == results(alone)
    listed = regbench.train(tiny(), tmp_path / "r2", seeds=[3, 9], quiet=True)
    assert [r.summary["seed"] for r in listed] == [3, 9]
    table = regbench.compare(runs)  # Run objects, not only paths
    (row,) = table.rows
    assert row.n == 2 and row.values["test_acc"].n == 2
    assert len(regbench.compare(tmp_path / "r").rows) == 1  # a single folder, searched
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(regbench.RegbenchError, match="to_pandas\\(\\) needs pandas"):
            table.to_pandas()
    else:
        assert list(table.to_pandas()["n"]) == [2]


def test_cli_seeds_go_through_train_seeds(tmp_path, monkeypatch):
    from regbench.training import execute as seeds

    cfg = write(tmp_path / "c.yaml", TINY_YAML)
    res = runner.invoke(app, ["train", str(cfg), "--seeds", "2", "--out", str(tmp_path / "r"), "-q"])
    assert res.exit_code == 0, res.output
    assert res.output.count("Run saved in") == 2 and len(list((tmp_path / "r").iterdir())) == 2
    seen = {}

    def fake(cfg, values, out, **kw):
        seen.update(values=values, out=out, **kw)
        return []

    monkeypatch.setattr(seeds, "train_seeds", fake)
    res = runner.invoke(app, ["train", str(cfg), "--seeds", "1,4,7", "--out", "x", "--lang", "en"])
    assert res.exit_code == 0 and seen == {
        "values": [1, 4, 7],
        "out": Path("x"),
        "lang": "en",
        "quiet": False,
        "stack": None,
    }


def cli_error(args: list[str]) -> str:
    """The CLI's one error line, without `error: `."""
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    (line,) = res.output.strip().splitlines()
    assert line.startswith("error: ")
    return line[len("error: ") :]


def test_api_errors_carry_the_cli_message(tmp_path):
    bad = write(tmp_path / "bad.yaml", "model: {layers: [[max, {stride: 3}]]}\n")
    with pytest.raises(regbench.ConfigError) as e:
        regbench.load_config(bad)
    assert str(e.value) == cli_error(["validate", str(bad)])
    with pytest.raises(regbench.ConfigError) as e:
        regbench.train(bad, tmp_path / "r")
    assert str(e.value) == cli_error(["train", str(bad), "--out", str(tmp_path / "r")])

    flowers = write(tmp_path / "f.yaml", f"data: {{name: flowers, root: {tmp_path / 'none'}}}\n")
    with pytest.raises(regbench.DataError) as e:
        regbench.train(flowers, tmp_path / "r")
    assert str(e.value) == cli_error(["train", str(flowers), "--out", str(tmp_path / "r")])

    good = write(tmp_path / "c.yaml", TINY_YAML)
    with pytest.raises(regbench.ConfigError) as e:
        regbench.train(good, tmp_path / "r", seeds=0)
    assert str(e.value) == cli_error(["train", str(good), "--seeds", "0", "--out", str(tmp_path / "r")])
    assert str(e.value) == "seeds: must be between 1 and 1000, got 0"

    with pytest.raises(regbench.RegbenchError) as e:
        regbench.compare([tmp_path / "nothing"])
    assert str(e.value) == cli_error(["compare", str(tmp_path / "nothing")])
    assert not (tmp_path / "r").exists()  # bad input writes nothing


@pytest.mark.parametrize("bad", [[], [1, 1], ["a"], -1, 1001, "3"])
def test_bad_seed_values_are_config_errors(bad):
    with pytest.raises(regbench.ConfigError, match="^seeds: "):
        regbench.train_seeds(tiny(), bad)


@pytest.mark.parametrize("normalize", ["none", "unit", "standardize", "center"])
def test_predict_on_raw_images_reproduces_the_test_accuracy(tmp_path, normalize):
    cfg = regbench.load_config(
        {
            "data": {"name": "digits", "normalize": normalize, "limit": {"train": 300}},
            "model": {"layers": [["conv", {"ksize": 3, "chn": 4}], ["max", {"stride": 2}], 16]},
            "optimizer": {"lr": 0.01},
            "train": {"epochs": 1, "show": 0},
        }
    )
    run = regbench.train(cfg, tmp_path, quiet=True)
    raw = load_data(dataclasses.replace(cfg.data, normalize="none"))  # pixels 0–16, the same test split
    x, y = raw.x["test"], raw.y["test"][:, 0].numpy()
    probs = run.predict(x.numpy())  # (N, 1, 8, 8)
    assert isinstance(probs, np.ndarray) and probs.shape == (len(y), 10)
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    assert (probs.argmax(1) == y).mean() == pytest.approx(run.summary["test_acc"])
    assert np.allclose(run.predict(x.permute(0, 2, 3, 1).numpy()), probs, atol=1e-6)  # (N, H, W, C)
    assert np.allclose(run.predict(x[:, 0].numpy()), probs, atol=1e-6)  # (N, H, W), one channel
    as_tensor = run.predict(x)
    assert isinstance(as_tensor, torch.Tensor) and torch.allclose(as_tensor, torch.from_numpy(probs), atol=1e-6)
    assert run.summary["normalization"]["mode"] == normalize


def test_model_and_predict_per_head(tmp_path):
    run = regbench.train(tiny(data__classes=[3, 4], data__count=200), tmp_path, quiet=True)
    net = run.model()
    assert not net.training and net.heads == [3, 4] and run.model() is net  # built once
    x = np.random.default_rng(0).random((5, 8, 8, 1)).astype(np.float32)
    domain, obj = run.predict(x)
    assert domain.shape == (5, 3) and obj.shape == (5, 4)
    assert run.predict(x[:0])[0].shape == (0, 3)


def test_predict_errors_are_one_line(tmp_path):
    run = regbench.train(tiny(), tmp_path, quiet=True)
    with pytest.raises(regbench.RunDirError, match=r"predict needs a batch of shape \(N, 1, 8, 8\) or \(N, 8, 8, 1\)"):
        run.predict(np.zeros((2, 3, 8, 8)))
    del run.summary["normalization"]  # a run written before the statistics were recorded
    with pytest.raises(regbench.RunDirError, match="pass normalize=False"):
        run.predict(np.zeros((2, 8, 8)))
    assert run.predict(np.zeros((2, 8, 8)), normalize=False).shape == (2, 3)
    with pytest.raises(regbench.RunDirError, match="no best.pt"):
        run.model("best.pt")


def test_the_cli_constants_of_the_api_agree_with_the_library():
    """`COMPARE_COLUMNS` and `SWEEP_STACK` are plain copies, so that the CLI's help needs no torch."""
    from regbench import api
    from regbench.analysis.compare import COLUMNS
    from regbench.experiments.sweep import DEFAULT_STACK

    assert api.COMPARE_COLUMNS == tuple(COLUMNS)
    assert api.SWEEP_STACK == DEFAULT_STACK


def test_the_package_names_load_on_first_use():
    """`regbench.X` for every public name is the API's object (loaded lazily, PEP 562)."""
    from regbench import api

    for name in regbench.__all__:
        assert getattr(regbench, name) is getattr(api, name), name
    assert set(regbench.__all__) <= set(dir(regbench))
    with pytest.raises(AttributeError):
        regbench.no_such_name  # noqa: B018


def test_validate_show_datasets_and_fetch(tmp_path):
    from regbench import api

    cfg = write(tmp_path / "c.yaml", TINY_YAML)
    check = api.validate(cfg)
    assert check.config.name == "api_tiny" and check.classes == "3"
    assert check.params == sum(r.weights + r.other for r in check.rows) > check.weights > 0
    assert api.show(cfg, ["model.layers=[8]"]).rows[-1].shape == (3,)
    rows = {r["name"]: r for r in api.datasets(tmp_path)}
    assert rows["digits"]["present"] == "built in" and rows["mnist"]["present"] == "no"
    started = []
    with pytest.raises(regbench.DataError, match="built in"):
        api.fetch("digits", tmp_path, starting=lambda: started.append(1))
    with pytest.raises(regbench.ConfigError, match="unknown data set"):
        api.fetch("nope", tmp_path)
    assert started == []
