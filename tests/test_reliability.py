"""Reliability and safety: resume after a crash, divergence guard, hostile input, concurrency, resource errors.
RELIABILITY.md maps each guarantee to the test here that proves it."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import tiny, write
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import regbench
from regbench.cli.main import app
from regbench.core.errors import ConfigError, DivergedError, RunDirError
from regbench.nn.layers import LAYERS
from regbench.resolve import load_config
from regbench.rundir import load_checkpoint, load_run
from regbench.training import engines as fitmod
from regbench.training import execute as trainer
from regbench.training import infer as infermod
from regbench.training import member as membermod

runner = CliRunner()

# dropout, noise and batch_normal: every random stream and running statistic must survive a resume
RESUME_CFG = """
name: resumable
seed: 5
data: {name: synthetic, count: 3000, classes: 4}
model:
  layers: [[noise, {std: 0.05}], [conv, {ksize: 3, chn: 6}], [batch_normal], [max, {stride: 2}], [dropout, {keep_prob: 0.8}], 24]
optimizer: {name: adam, lr: 0.003, schedule: cosine}
train: {epochs: 4, batch_size: 10, threads: 1, log_every: 7, show: 2, early_stop: {patience: 10}, test_on: best, checkpoint_every: 0}
"""


def timeless(run):
    """Metrics, summary and steps without wall-clock fields."""
    rows = [{k: v for k, v in r.items() if not k.endswith("_s")} for r in run.metrics]
    keep = ("test_acc", "test_loss", "best_epoch", "best_val_acc", "epochs_done", "steps_done", "params", "gap")
    steps = (run.path / "steps.jsonl").read_text() if (run.path / "steps.jsonl").exists() else ""
    return rows, {k: run.summary.get(k) for k in keep}, steps


def same_weights(a: Path, b: Path) -> bool:
    sa, sb = (torch.load(p / "model.pt", weights_only=True) for p in (a, b))
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path):
    cfg_file = write(tmp_path / "resumable.yaml", RESUME_CFG)
    whole = regbench.train(load_config(cfg_file), tmp_path / "whole", quiet=True)

    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "regbench", "train", str(cfg_file), "-o", str(out), "-q"], env=env)
    deadline = time.time() + 120
    metrics = None
    while time.time() < deadline:
        found = list(out.glob("*/metrics.jsonl"))
        if found and len(found[0].read_text().splitlines()) >= 2:
            metrics = found[0]
            break
        time.sleep(0.01)
    assert metrics is not None, "the run never finished its second epoch"
    time.sleep(0.05)  # into epoch 3
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run_dir = metrics.parent
    killed = load_run(run_dir)
    assert killed.summary["status"] == "running" and killed.status == "stopped"  # its process is gone
    assert load_checkpoint(run_dir)["epoch"] >= 2

    res = subprocess.run(
        [sys.executable, "-m", "regbench", "train", "--resume", str(run_dir), "-q"], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    resumed = load_run(run_dir)
    assert resumed.status == "completed" and resumed.summary["resumed"][0]["after_epoch"] >= 2
    assert timeless(resumed) == timeless(whole)
    assert same_weights(run_dir, whole.path)
    assert (run_dir / "log.txt").read_text().count("Model resumable test report") == 1


def interrupt_at(monkeypatch, module, name: str, n: int):
    """Make `module.name` raise KeyboardInterrupt on its n-th call; returns a function that undoes it."""
    calls, real = {"n": 0}, getattr(module, name)

    def interrupt(*a, **k):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(module, name, interrupt)
    return lambda: monkeypatch.setattr(module, name, real)


def test_ctrl_c_then_resume_in_process(runs, monkeypatch):
    cfg = tiny(train__epochs=3, model__layers=[["conv", {"ksize": 3, "chn": 4}], ["dropout", {"keep_prob": 0.5}], 8])
    whole = regbench.train(cfg, runs / "a", quiet=True)
    undo = interrupt_at(monkeypatch, fitmod, "head_loss", 17)  # epoch 2 of 12-step epochs
    with pytest.raises(KeyboardInterrupt):
        regbench.train(cfg, runs / "b", quiet=True)
    undo()
    (path,) = (runs / "b").iterdir()
    assert load_run(path).status == "interrupted"
    resumed = trainer.resume(path, quiet=True)
    assert timeless(resumed) == timeless(whole) and same_weights(path, whole.path)


def test_resume_of_an_ensemble_keeps_finished_members(runs, monkeypatch):
    cfg = tiny(train__ensemble=3)
    whole = regbench.train(cfg, runs / "a", quiet=True, stack=1)  # one member after another
    undo = interrupt_at(monkeypatch, fitmod, "head_loss", 24 + 30)  # in the third member's first epoch
    with pytest.raises(KeyboardInterrupt):
        regbench.train(cfg, runs / "b", quiet=True, stack=1)
    undo()
    (path,) = (runs / "b").iterdir()
    statuses = [load_run(d).status for d in sorted((path / "members").iterdir())]
    assert statuses == ["completed", "completed", "interrupted"]
    resumed = trainer.resume(path, quiet=True)
    assert resumed.summary["ensemble"]["test_acc"] == whole.summary["ensemble"]["test_acc"]


def test_resume_of_a_stacked_ensemble_continues_every_member(runs, monkeypatch):

    cfg = tiny(train__ensemble=3, train__epochs=3)
    whole = regbench.train(cfg, runs / "a", quiet=True)
    undo = interrupt_at(monkeypatch, fitmod, "member_losses", 15)  # epoch 2 of the stacked members
    with pytest.raises(KeyboardInterrupt):
        regbench.train(cfg, runs / "b", quiet=True)
    undo()
    (path,) = (runs / "b").iterdir()
    assert {load_run(d).status for d in (path / "members").iterdir()} == {"interrupted"}
    resumed = trainer.resume(path, quiet=True)  # each member continues from its own checkpoint
    assert resumed.status == "completed"
    for a, b in zip(resumed.summary["ensemble"]["members"], whole.summary["ensemble"]["members"], strict=True):
        ra, rb = load_run(path / a["path"]), load_run(whole.path / b["path"])
        assert [m["train_loss"] for m in ra.metrics] == pytest.approx([m["train_loss"] for m in rb.metrics], rel=2e-4)


def test_resume_refuses_finished_runs_and_non_runs(runs, tmp_path):
    run = regbench.train(tiny(train__epochs=1), runs, quiet=True)
    with pytest.raises(RunDirError, match="already completed"):
        trainer.resume(run.path)
    with pytest.raises(RunDirError, match="not a run directory"):
        trainer.resume(tmp_path)
    res = runner.invoke(app, ["train", "--resume", str(run.path)])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "already completed" in res.output
    res = runner.invoke(app, ["train", "--resume", str(run.path), "--set", "train.epochs=3"])
    assert res.exit_code == 2 and "--set cannot change a run being resumed" in res.output


def test_a_completed_run_trains_on_to_more_epochs_as_if_started_with_them(runs):
    layers = [["conv", {"ksize": 3, "chn": 4}], ["conv", {"ksize": 3, "chn": 4}], ["max", {"stride": 2}], 16]
    over = {"model__layers": layers, "optimizer__lr": 0.01}  # two convs, and a pace at which a wrong moment shows
    short = regbench.train(tiny(train__epochs=2, **over), runs / "a", quiet=True)
    straight = regbench.train(tiny(train__epochs=4, **over), runs / "b", quiet=True)
    res = runner.invoke(app, ["train", "--resume", str(short.path), "--epochs", "4", "-q"])
    assert res.exit_code == 0, res.output
    longer = load_run(short.path)
    assert longer.status == "completed" and longer.config["train"]["epochs"] == 4 and len(longer.metrics) == 4
    assert [m["train_loss"] for m in longer.metrics] == [m["train_loss"] for m in straight.metrics]
    assert longer.summary["test_acc"] == straight.summary["test_acc"]
    assert longer.summary["epochs"] == 4 and longer.summary["resumed"][-1]["epochs"] == 4
    # a run trained side by side with another trains on alone, to the same numbers
    a, b = regbench.train(tiny(train__epochs=2, **over), runs / "c", seeds=2, quiet=True)
    regbench.resume(a.path, epochs=4, quiet=True)  # its NCHW Adam moments meet a channels_last weight
    wider = load_run(a.path).metrics
    assert [m["train_loss"] for m in wider] == pytest.approx([m["train_loss"] for m in straight.metrics], rel=1e-4)


@pytest.mark.parametrize(
    "over, epochs, message",
    [
        ({}, 2, "its config already has train.epochs 2; give more"),
        ({"optimizer__schedule": "cosine"}, 4, "its cosine schedule spans the planned 2 epochs"),
        ({"train__iterations": 20}, 4, "its length is train.iterations (20)"),
    ],
)
def test_training_on_is_refused_where_it_would_differ(runs, over, epochs, message):
    run = regbench.train(tiny(**over), runs, quiet=True)
    res = runner.invoke(app, ["train", "--resume", str(run.path), "--epochs", str(epochs)])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and message in res.output, res.output
    assert load_run(run.path).metrics == run.metrics  # nothing changed


def test_divergence_exits_3_with_one_line_naming_epoch_and_step(tmp_path):
    cfg = write(
        tmp_path / "boom.yaml", "data: {name: synthetic, count: 100, classes: 3}\noptimizer: {name: sgd, lr: 1.0e+12}\n"
    )
    res = runner.invoke(app, ["train", str(cfg), "-o", str(tmp_path / "r")])
    assert res.exit_code == 3
    err = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "in epoch 1, step" in err[0] and "diverged" in err[0]
    assert "no checkpoint had been written yet" in err[0]
    (path,) = (tmp_path / "r").iterdir()
    assert load_run(path).status == "diverged"


def test_divergence_keeps_the_last_good_checkpoint(runs, monkeypatch):
    calls, real = {"n": 0}, fitmod.head_loss

    def nan_later(*a, **k):
        calls["n"] += 1
        loss = real(*a, **k)
        return loss * float("nan") if calls["n"] == 26 else loss  # 9 train + 1 val call per epoch: epoch 3, step 6

    monkeypatch.setattr(fitmod, "head_loss", nan_later)
    monkeypatch.setattr(infermod, "head_loss", nan_later)
    with pytest.raises(
        DivergedError, match=r"epoch 3, step 6 of 9 \(step 24 of the run\); .* its checkpoint of epoch 2 is kept"
    ):
        regbench.train(tiny(train__epochs=4, train__checkpoint_every=0), runs, quiet=True)
    (path,) = runs.iterdir()
    ckpt = load_checkpoint(path)
    assert load_run(path).status == "diverged" and ckpt["epoch"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


class Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_checkpoints_and_models_never_unpickle_code(runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = regbench.train(tiny(train__epochs=1), runs, quiet=True)
    torch.save({"epoch": 1, "evil": Payload()}, run.path / "checkpoint.pt")
    torch.save({"w": Payload()}, run.path / "model.pt")
    with pytest.raises(RunDirError, match="cannot load the checkpoint"):
        load_checkpoint(run.path)
    with pytest.raises(RunDirError, match="cannot load"):
        run.state_dict()
    assert not (tmp_path / "pwned").exists()


YAML_TAGS = [
    "!!python/object/apply:os.system ['touch pwned']",
    "!!python/name:os.system",
    "!!python/object/new:subprocess.Popen [['touch', 'pwned']]",
]


@pytest.mark.parametrize("tag", YAML_TAGS)
def test_python_yaml_tags_are_rejected(tmp_path, monkeypatch, tag):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["validate", str(write(tmp_path / "evil.yaml", f"name: {tag}\n"))])
    assert res.exit_code == 2 and "unsafe or unknown YAML tag rejected" in res.output
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"name": "../../x"}, "name: must be letters"),
        ({"name": "/etc/passwd"}, "name: must be letters"),
        ({"train": {"epochs": -1}}, "train.epochs: must be between 1"),
        ({"train": {"batch_size": 0}}, "train.batch_size: must be between 1"),
        ({"model": {"layers": [["dropout", {"keep_prob": 0}]]}}, "keep_prob: must be in (0, 1]"),
        ({"model": {"layers": [9_999_999, 9_999_999]}}, "parameters, more than"),
        ({"model": {"layers": [40_000, 40_000]}}, "GiB, more than the"),
        ({"data": {"name": "synthetic", "shape": [4096, 4096, 3], "count": 100_000}}, "data.count: 100,000 samples"),
    ],
)
def test_out_of_range_values_fail_before_any_work(doc, message, runs):
    with pytest.raises(ConfigError, match=None) as e:
        regbench.train(load_config(doc), runs, quiet=True)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not runs.exists()


# ------------------------------------------------------------------------------------------------ fuzzing
SECTIONS = {
    "data": ["name", "root", "seed", "split", "limit", "shape", "classes", "count"],
    "model": ["layers", "init", "activation"],
    "regularizer": ["l2_decay", "l1_decay", "mode"],
    "optimizer": ["name", "lr", "momentum", "eps", "schedule", "warmup", "gamma", "weight_decay", "min_lr"],
    "train": ["epochs", "batch_size", "report", "show", "device", "iterations", "early_stop", "ensemble", "test_on"],
}
LAYER_TYPES = [*LAYERS.names(), "pool"]  # every registered type, and one that is not
PARAMS = [
    "ksize",
    "chn",
    "stride",
    "keep_prob",
    "std",
    "type",
    "width",
    "actfunc",
    "layers",
    "branches",
    "repeat",
    "padding",
    "batch_normal",
    "init",
    "epsilon",
]

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
plausible = st.one_of(
    st.integers(-2, 12),
    st.floats(-1, 2),
    st.sampled_from(
        [
            "digits",
            "synthetic",
            "adam",
            "sgd",
            "relu",
            "sigmoid",
            "same",
            "valid",
            "normal",
            "uniform",
            "he_normal",
            "cosine",
            "best",
            "val_loss",
            "cpu",
            "cuda:3",
            "auto",
            "decoupled",
            "penalty",
        ]
    ),
    st.lists(st.integers(-1, 12), min_size=1, max_size=3),
    st.dictionaries(
        st.sampled_from(["train", "val", "test", "patience", "type", "std", "low", "high", "metric"]),
        st.integers(-1, 5) | st.floats(0, 1),
        max_size=2,
    ),
)
value = st.one_of(
    plausible,
    plausible,
    plausible,
    junk,
    st.recursive(
        junk, lambda i: st.lists(i, max_size=3) | st.dictionaries(st.text(max_size=5), i, max_size=3), max_leaves=6
    ),
)


def layer_list(depth: int = 2):
    params = st.dictionaries(
        st.sampled_from(PARAMS),
        value if depth == 0 else st.one_of(value, st.deferred(lambda: layer_list(depth - 1))),
        max_size=3,
    )
    entry = st.one_of(
        st.integers(-3, 40),
        st.tuples(st.sampled_from(LAYER_TYPES)).map(list),
        st.tuples(st.sampled_from(LAYER_TYPES), params).map(list),
        junk,
    )
    return st.lists(entry, max_size=5)


def config_docs():
    parts = {
        name: st.dictionaries(st.sampled_from(keys) | st.just("bogus"), value, max_size=4) | junk
        for name, keys in SECTIONS.items()
    }
    parts["model"] = st.fixed_dictionaries({}, optional={"layers": layer_list(), "activation": value, "init": value})
    parts["data"] = st.fixed_dictionaries(
        {"name": st.sampled_from(["synthetic", "digits", "mnist?"])}, optional={k: value for k in SECTIONS["data"][1:]}
    )
    return st.fixed_dictionaries(
        {},
        optional={
            **parts,
            "name": st.one_of(st.just("ok"), st.just("ok"), st.just("ok"), value),
            "seed": st.integers(-1, 2**64),
        },
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config_docs())
def test_fuzzed_configs_validate_or_fail_with_one_line(doc):
    try:
        load_config(doc)
    except ConfigError as e:
        assert "\n" not in str(e) and str(e).startswith("<config>")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_fuzzed_yaml_text_validates_or_fails_with_one_line(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "c.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path)
    except ConfigError as e:
        assert "\n" not in str(e)


# ------------------------------------------------------------------------------------------------ concurrency
def test_runs_started_together_get_distinct_directories(tmp_path):
    cfg = write(tmp_path / "same.yaml", "data: {name: synthetic, count: 60, classes: 3}\ntrain: {epochs: 1, show: 0}\n")
    cmd = [sys.executable, "-m", "regbench", "train", str(cfg), "-o", str(tmp_path / "r"), "-q"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL) for _ in range(2)]
    assert [p.wait() for p in procs] == [0, 0]
    dirs = list((tmp_path / "r").iterdir())
    assert len(dirs) == 2 and all(load_run(d).status == "completed" for d in dirs)


def test_reading_a_run_while_it_is_written(runs):
    seen, errors = set(), []
    done = threading.Event()

    def reader():
        while not done.is_set():
            for d in runs.glob("*") if runs.exists() else []:
                try:
                    run = load_run(d)
                    seen.add((run.status, len(run.metrics)))
                except RunDirError:
                    pass  # config.yaml or summary.json not written yet
                except Exception as e:  # anything else would crash compare/report
                    errors.append(e)

    t = threading.Thread(target=reader)
    t.start()
    try:
        regbench.train(tiny(train__epochs=6, data__count=600), runs, quiet=True)
    finally:
        done.set()
        t.join()
    (path,) = runs.iterdir()
    assert not errors and any(status == "running" for status, _ in seen) and len(seen) >= 3
    assert load_run(path).status == "completed"


def test_a_torn_metrics_line_is_skipped(runs):
    run = regbench.train(tiny(), runs, quiet=True)
    with open(run.path / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 3, "train_lo')
    assert [m["epoch"] for m in load_run(run.path).metrics] == [1, 2]


# ------------------------------------------------------------------------------------------------ resources
def test_an_unwritable_runs_folder_is_one_line(tmp_path):
    blocker = write(tmp_path / "file", "not a folder")
    cfg = write(tmp_path / "c.yaml", "data: {name: synthetic, count: 60, classes: 3}\n")
    res = runner.invoke(app, ["train", str(cfg), "-o", str(blocker / "runs")])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "cannot create the runs directory" in res.output


def test_a_full_disk_mid_run_is_one_line_and_keeps_written_files_valid(runs, monkeypatch):
    import regbench.core.files as rundir

    calls, real = {"n": 0}, os.replace

    def full_disk(src, dst):
        calls["n"] += 1
        if calls["n"] >= 8:  # after config, summary and a few epochs' files
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(rundir.os, "replace", full_disk)
    with pytest.raises(RunDirError, match="No space left on device") as e:
        regbench.train(tiny(train__epochs=5), runs, quiet=True)
    assert "\n" not in str(e.value)
    monkeypatch.setattr(rundir.os, "replace", real)
    (path,) = runs.iterdir()
    run = load_run(path)  # config.yaml, summary.json and metrics.jsonl are still whole
    assert run.config["name"] == "tiny" and run.metrics and all("epoch" in m for m in run.metrics)
    json.loads((path / "summary.json").read_text())
    assert not list(path.glob(".*.tmp"))


def test_checkpoint_cadence(runs, monkeypatch):
    """After every epoch with checkpoint_every: 0; by default at most every 0.5 s, and always after the last."""
    calls = []
    real = membermod.Member.checkpoint
    monkeypatch.setattr(
        membermod.Member, "checkpoint", lambda self, epoch, *a: calls.append(epoch) or real(self, epoch, *a)
    )
    every = regbench.train(tiny(train__epochs=5, train__checkpoint_every=0), runs, quiet=True)
    assert calls == [1, 2, 3, 4, 5] and load_checkpoint(every.path)["epoch"] == 5
    calls.clear()
    throttled = regbench.train(tiny(train__epochs=5), runs, quiet=True)  # epochs of milliseconds
    assert calls[-1] == 5 and len(calls) < 5 and load_checkpoint(throttled.path)["epoch"] == 5


def test_a_resumed_run_goes_on_in_its_own_language(runs):
    run = regbench.train(tiny(train__epochs=1, train__show=2), runs, quiet=True, lang="en")
    assert run.summary["lang"] == "en"
    regbench.resume(run.path, epochs=2, quiet=True)  # the call's default is ko; the run's en wins
    log = (run.path / "log.txt").read_text(encoding="utf-8")
    assert log.count("estimated distribution") == 2
    assert "추정" not in log
