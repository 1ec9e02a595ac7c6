"""The trainer and the run directory contract: files, fields, atomicity, determinism, book-format output."""

from __future__ import annotations

import json
import re

import pytest
import torch
import yaml
from conftest import tiny

import regbench
from regbench.core.errors import DivergedError
from regbench.nn.model import build_model
from regbench.resolve import load_config
from regbench.rundir import load_run

METRIC_KEYS = {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "epoch_s", "total_s"}
SUMMARY_KEYS = {
    "name",
    "status",
    "test_acc",
    "test_loss",
    "train_s",
    "epochs_done",
    "params",
    "device",
    "seed",
    "versions",
    "provenance",
}


def test_run_directory_contract(runs):
    cfg = tiny()
    run = regbench.train(cfg, runs, quiet=True)
    assert re.fullmatch(r"tiny-\d{8}-\d{6}", run.path.name) and run.path.parent == runs
    assert {p.name for p in run.path.iterdir()} == {
        "config.yaml",
        "metrics.jsonl",
        "summary.json",
        "model.pt",
        "log.txt",
        "checkpoint.pt",
        "curves.png",  # the run's own learning curves
        "test_pred.npz",  # per-example test predictions (compare's McNemar test for single runs)
    }
    # config.yaml is the fully resolved config and loads back to the same thing
    assert load_config(yaml.safe_load((run.path / "config.yaml").read_text())) == cfg
    rows = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and all(METRIC_KEYS <= r.keys() for r in rows)
    assert rows[1]["total_s"] >= rows[1]["epoch_s"] > 0
    s = json.loads((run.path / "summary.json").read_text())
    assert SUMMARY_KEYS <= s.keys()
    assert s["status"] == "completed" and s["epochs_done"] == 2 and s["seed"] == cfg.seed and s["device"] == "cpu"
    assert (
        set(s["params"]) >= {"weights", "near_zero", "mean", "std"}
        and s["params"]["weights"] == 3 * 3 * 4 + 4 * 4 * 4 * 16 + 16 * 3
    )
    assert set(s["versions"]) >= {"python", "torch"} and 0 <= s["test_acc"] <= 1
    # model.pt is a plain state_dict that the builder's model accepts, loadable without unpickling code
    state = torch.load(run.path / "model.pt", weights_only=True)
    net, _ = build_model(cfg.model, (1, 8, 8), [3])
    net.load_state_dict(state)
    assert not list(run.path.glob(".*.tmp"))  # no temporary files left behind


def test_same_config_and_seed_give_identical_metrics(runs):
    def strip(run):
        return [{k: v for k, v in r.items() if not k.endswith("_s")} for r in run.metrics], run.summary["test_acc"]

    layers = [
        ["noise", {"std": 0.05}],
        ["conv", {"ksize": 3, "chn": 4}],
        ["batch_normal"],
        ["max", {"stride": 2}],
        ["dropout", {"keep_prob": 0.7}],
        16,
    ]
    a = regbench.train(tiny(model__layers=layers), runs, quiet=True)
    b = regbench.train(tiny(model__layers=layers), runs, quiet=True)
    c = regbench.train(tiny(model__layers=layers, seed=7), runs, quiet=True)
    assert strip(a) == strip(b)
    assert strip(a) != strip(c)
    assert a.path != b.path  # same name, same second: distinct directories


def test_demo_config_reaches_090_on_digits(runs):
    run = regbench.train(load_config("configs/digits_cnn.yaml", {"train.show": 0}), runs, quiet=True)
    assert run.summary["test_acc"] >= 0.9
    assert run.summary["data"] == {
        "name": "digits",
        "train": 1430,
        "val": 89,
        "test": 278,
    }  # book split of 1,797


def test_book_format_report(runs, capsys):
    regbench.train(tiny(train__report=2, train__epochs=4, train__show=2, train__show_params=True), runs)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Model tiny train started:"
    assert re.fullmatch(r"    Epoch 2: cost=\d\.\d{3}, accuracy=\d\.\d{3}/\d\.\d{3} \(\d+/\d+ secs\)", out[1])
    assert re.fullmatch(r"    Epoch 4: .*", out[2])
    assert re.fullmatch(r"Model tiny train ended in \d+ secs:", out[3])
    assert re.fullmatch(r"Model tiny test report: accuracy = \d\.\d{3}, \(\d+ secs\)", out[4]) and out[5] == ""
    assert out[6] == "Model tiny Visualization"
    assert all(
        re.fullmatch(r"추정확률분포 \[[ \d]{2,3},[ \d]{2,3},[ \d]{2,3}\] => 추정 c\d : 정답 c\d => [OX]", line)
        for line in out[7:9]
    )
    assert re.fullmatch(r"Near 0 parameters = [ \d]{2,3}\.\d%\(\d+/\d+\)", out[9])  # book: {:4.1f}%
    assert len(out) == 10  # no mu/sigma line: the book draws them on the histogram only
    summary = json.loads(next(runs.glob("tiny-*/summary.json")).read_text())
    assert {"mean", "std", "near_zero", "weights"} <= summary["params"].keys()


def test_english_report_and_log_file(runs, capsys):
    run = regbench.train(tiny(train__show=1), runs, lang="en")
    out = capsys.readouterr().out
    assert "estimated distribution [" in out and "=> estimate c" in out and ": answer c" in out
    assert (run.path / "log.txt").read_text().splitlines()[0] == "Model tiny train started:"


def test_report_zero_prints_only_the_book_end_lines(runs, capsys):
    regbench.train(tiny(train__report=0), runs)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Model tiny train ended in") and "test report" in out[1]


def test_two_heads_report_accuracy_per_head(runs, capsys):
    run = regbench.train(tiny(data__classes=[3, 4], data__count=200, train__show=1), runs)
    out = capsys.readouterr().out
    assert re.search(r"accuracy=\d\.\d{3}\+\d\.\d{3}/\d\.\d{3}\+\d\.\d{3}", out)
    assert re.search(r"test report: accuracy = \d\.\d{3}\+\d\.\d{3},", out)
    assert "[ head0 추정결과 ]" in out and "[ head1 추정결과 ]" in out
    assert len(run.summary["test_acc"]) == 2 and len(run.metrics[0]["train_acc"]) == 2


def test_show_params_writes_the_books_histogram(runs):
    run = regbench.train(tiny(train__show_params=True), runs, quiet=True)
    png = (run.path / "params_hist.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_divergence_stops_with_status_diverged(runs):
    with pytest.raises(DivergedError, match=r"epoch 1, step \d+"):
        regbench.train(tiny(optimizer__name="sgd", optimizer__lr=1e12), runs, quiet=True)
    (path,) = runs.iterdir()
    assert load_run(path).status == "diverged"


def test_interrupt_marks_the_run_and_keeps_valid_files(runs, monkeypatch):
    from regbench.training import engines as trainer

    calls = {"n": 0}
    real = trainer.head_loss

    def interrupt_later(*a, **k):
        calls["n"] += 1
        if calls["n"] == 15:  # in epoch 2
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(trainer, "head_loss", interrupt_later)
    with pytest.raises(KeyboardInterrupt):
        regbench.train(tiny(), runs, quiet=True)
    (path,) = runs.iterdir()
    run = load_run(path)
    assert run.status == "interrupted" and run.summary["epochs_done"] == 1 and len(run.metrics) == 1
    torch.load(path / "model.pt", weights_only=True)


def test_a_failure_after_start_is_recorded(runs, monkeypatch):
    from regbench.training import engines as trainer

    monkeypatch.setattr(trainer, "evaluate", lambda *a: (_ for _ in ()).throw(RuntimeError("disk on fire")))
    with pytest.raises(RuntimeError):
        regbench.train(tiny(), runs, quiet=True)
    (path,) = runs.iterdir()
    s = load_run(path).summary
    assert s["status"] == "failed" and "disk on fire" in s["error"]


def test_bad_input_writes_nothing(runs):
    with pytest.raises(regbench.ConfigError):
        regbench.train(tiny(model__layers=[["max", {"stride": 3}]]), runs, quiet=True)
    assert not runs.exists()


def test_limit_keeps_every_class(runs):
    run = regbench.train(
        tiny(data__count=600, data__limit={"train": 30, "val": 9, "test": 12}, train__epochs=1),
        runs,
        quiet=True,
    )
    assert run.summary["data"] == {"name": "synthetic", "train": 30, "val": 9, "test": 12}
    from regbench.data import load_data

    ds = load_data(
        load_config(
            {
                "data": {
                    "name": "synthetic",
                    "count": 600,
                    "classes": 3,
                    "limit": {"train": 30, "val": 9, "test": 12},
                }
            }
        ).data
    )
    for split in ("train", "val", "test"):
        counts = torch.bincount(ds.y[split][:, 0], minlength=3)
        assert counts.min() >= ds.size(split) // 3 - 1


def test_splits_are_disjoint_and_follow_the_books_ratios():
    from regbench.data import load_data

    ds = load_data(load_config({}).data)
    assert (ds.size("train"), ds.size("val"), ds.size("test")) == (1430, 89, 278)
    rows = {tuple(x.flatten().tolist()) for s in ("train", "val", "test") for x in ds.x[s]}
    assert len(rows) >= 1797 - 20  # digits has a few duplicate images; splits do not overlap beyond them


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_run_matches_the_contract(runs):
    run = regbench.train(tiny(train__device="cuda"), runs, quiet=True)
    assert run.summary["device"].startswith("cuda") and run.status == "completed"


def test_bf16_autocast_trains(runs):
    """train.amp: bf16 runs forward and loss under autocast (meant for CUDA; CPU autocast works too)."""
    run = regbench.train(tiny(train__amp="bf16", train__epochs=3, data__count=300), runs, quiet=True)
    assert run.status == "completed" and run.metrics[-1]["train_loss"] < run.metrics[0]["train_loss"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_stacked_and_bf16(runs):
    from regbench.training.execute import train_group

    cfgs = [tiny(train__device="cuda", train__amp="bf16", seed=s) for s in (1, 2)]
    assert [r.status for r in train_group(cfgs, runs, quiet=True)] == ["completed", "completed"]
