"""Faults (issue 25): a sweep worker killed mid-batch, resume of a damaged or edited run, signals, a run
directory with no checkpoint yet. Every test here failed before its fix."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import tiny, write
from typer.testing import CliRunner

import regbench
from regbench import runner as runner_mod
from regbench.cli.main import app
from regbench.core.errors import DivergedError, RunDirError
from regbench.rundir import load_run

cli = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------- dead workers
class KillWorker:
    """A run's per-epoch callback that SIGKILLs its own worker process once the checkpoint of `epoch` (or a
    later one) is on disk, `times` times in all (counted in a file: each replacement worker is a new process)."""

    def __init__(self, path: str, epoch: int, times: int = 1):
        self.path, self.epoch, self.times = path, epoch, times

    def __call__(self, row: dict) -> None:
        count = Path(self.path) / "kills"
        done = int(count.read_text()) if count.is_file() else 0
        if row["epoch"] < self.epoch or done >= self.times:
            return
        count.write_text(str(done + 1))
        deadline = time.monotonic() + 30
        while self.summary_epoch() != self.epoch and time.monotonic() < deadline:
            time.sleep(0.01)  # a background thread writes the checkpoint, then the summary
        os.kill(os.getpid(), signal.SIGKILL)

    def summary_epoch(self) -> int | None:
        try:
            return json.loads((Path(self.path) / "summary.json").read_text())["epochs_done"]
        except (OSError, ValueError, KeyError):
            return None


def tasks_of(tmp_path: Path, seeds: list[int], kill: KillWorker | None = None) -> list[runner_mod.RunTask]:
    tasks = []
    for seed in seeds:
        cfg = tiny(seed=seed, train__epochs=4, train__checkpoint_every=0).to_dict()
        path = tmp_path / f"run-{seed}"
        cb = KillWorker(str(path), kill.epoch, kill.times) if kill is not None and not tasks else None  # the first
        tasks.append(runner_mod.RunTask(f"s{seed}", cfg, str(path), cb))
    return tasks


def test_a_killed_worker_s_stacked_batch_is_requeued_and_resumed_to_identical_metrics(tmp_path):
    """Two runs side by side in one worker; the worker is SIGKILLed after epoch 2 (once): a replacement
    continues each run alone from its checkpoint; each is trained once and ends completed, with the metrics
    of an uninterrupted run."""
    ref = {r.key: r for r in runner_mod.run_trials(tasks_of(tmp_path / "ref", [1, 2]), workers=0, stack=2)}
    killed = tasks_of(tmp_path / "kill", [1, 2], KillWorker("", 2))
    results = list(runner_mod.run_trials(killed, workers=1, stack=2))
    assert sorted(r.key for r in results) == ["s1", "s2"]  # one result per run: none lost, none twice
    assert {r.status for r in results} == {"completed"}, results
    for key in ("s1", "s2"):
        got, want = load_run(tmp_path / "kill" / f"run-{key[1:]}"), load_run(ref[key].path)
        assert [m["epoch"] for m in got.metrics] == [1, 2, 3, 4]
        # s1's callback killed the worker after s1's epoch-2 checkpoint, before s2's was written
        assert got.summary["side_by_side"] == 2
        assert [r["after_epoch"] for r in got.summary["resumed"]] == ([2] if key == "s1" else [1])
        # epochs 3-4 train alone after the resume: equal to the side-by-side reference up to float rounding
        for a, b in zip(got.metrics, want.metrics, strict=True):
            assert {k: v for k, v in a.items() if not k.endswith("_s")} == pytest.approx(
                {k: v for k, v in b.items() if not k.endswith("_s")}, rel=1e-4
            )
        assert got.summary["test_acc"] == pytest.approx(want.summary["test_acc"], abs=0.02)


def test_a_run_whose_worker_keeps_dying_is_failed_after_three_tries(tmp_path):
    tasks = tasks_of(tmp_path, [1], KillWorker("", 1, times=10))
    results = list(runner_mod.run_trials(tasks, workers=1))
    assert len(results) == 1 and results[0].status == "failed"
    assert results[0].error.startswith(runner_mod.WORKER_DIED) and "3 times" in results[0].error
    assert (tmp_path / "run-1" / "kills").read_text() == "3"


SWEEP = """
name: g3
base:
  data: {name: digits, limit: {train: 100, val: 50, test: 50}}
  model: {layers: [16]}
  optimizer: {name: sgd, lr: 0.1}
  train: {epochs: 100, batch_size: 20, report: 0, show: 0, checkpoint_every: 0}
params:
  optimizer.lr: [0.05, 0.1, 0.2]
"""


def test_a_sweep_worker_killed_mid_batch_loses_no_trial(tmp_path):
    """`regbench sweep --workers 2`, then kill -9 of the worker training the stacked batch: the sweep
    re-queues its three trials on a replacement worker, each resumes from its checkpoint, all complete."""
    path = write(tmp_path / "g3.yaml", SWEEP)
    cmd = [sys.executable, "-m", "regbench", "sweep", str(path), "--out", str(tmp_path / "out"), "--workers", "2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    d = tmp_path / "out" / "g3"
    try:
        pid, deadline = None, time.monotonic() + 120
        while pid is None and time.monotonic() < deadline:
            for run in d.glob("g3-t*-s1"):
                try:
                    summary = json.loads((run / "summary.json").read_text())
                except (OSError, ValueError):
                    continue
                if (run / "checkpoint.pt").is_file() and summary["status"] == "running":
                    pid = summary["pid"]
            time.sleep(0.05)
        assert pid is not None and pid != proc.pid
        os.kill(pid, signal.SIGKILL)  # the worker only, as the OOM killer does
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = out.decode()
    assert proc.returncode == 0, text
    assert "3 trials: 3 completed" in text, text
    runs = [load_run(p) for p in sorted(d.glob("g3-t*-s1"))]
    assert [r.status for r in runs] == ["completed"] * 3
    assert all([m["epoch"] for m in r.metrics] == list(range(1, 101)) for r in runs)
    resumed = [r for r in runs if r.summary.get("resumed")]
    assert resumed and all(len(r.summary["resumed"]) == 1 for r in resumed)  # continued once, not retrained


# ----------------------------------------------------------------------------------------------- signals
LONG = """
name: long
data: {name: synthetic, count: 200, classes: 3}
model: {layers: [16]}
train: {epochs: 100000, batch_size: 10, report: 0, show: 0, threads: 1, checkpoint_every: 0}
"""


def start_train(tmp_path: Path) -> subprocess.Popen:
    cfg = write(tmp_path / "long.yaml", LONG)
    cmd = [sys.executable, "-m", "regbench", "train", str(cfg), "--out", str(tmp_path / "runs"), "-q"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_epoch(runs: Path, proc: subprocess.Popen, timeout: float = 120) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for d in runs.glob("long-*"):
            if (d / "checkpoint.pt").is_file():
                return d
        time.sleep(0.05)
    proc.kill()
    pytest.fail("the run wrote no checkpoint: " + proc.communicate()[1])


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_burst_of_signals_leaves_the_run_interrupted_with_one_line(tmp_path, sig, code):
    """Five Ctrl-C (or SIGTERM) 10 ms apart while training: one error line, exit 130 (143), no traceback,
    summary `interrupted` and the run resumable."""
    proc = start_train(tmp_path)
    d = wait_for_epoch(tmp_path / "runs", proc)
    for _ in range(5):
        proc.send_signal(sig)
        time.sleep(0.01)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("error: interrupted"), err
    assert load_run(d).status == "interrupted" and (d / "model.pt").is_file()


def handlers_installed(pid: int) -> bool:
    """Whether the process catches SIGTERM (Python alone does not: regbench's handlers are in place)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next((int(line.split()[1], 16) for line in text.splitlines() if line.startswith("SigCgt:")), 0)
    return bool(mask >> (signal.SIGTERM - 1) & 1)


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads the signal mask from /proc")
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_the_command_starts_is_one_line(tmp_path, sig, code):
    """Signals as soon as the handlers are in place, while the slow imports run (before: a traceback, −2)."""
    proc = start_train(tmp_path)
    deadline = time.monotonic() + 60
    while not handlers_installed(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    proc.send_signal(sig)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code and "Traceback" not in err and err.count("\n") == 1, err


# ----------------------------------------------------------------------------------------------- resume
def interrupted_run(runs: Path, monkeypatch, epochs: int = 6, at_step: int = 40, **over) -> Path:
    """A tiny run (9 steps an epoch, a checkpoint every epoch) stopped by Ctrl-C in epoch 5."""
    from regbench.training import engines

    calls, real = {"n": 0}, engines.head_loss

    def interrupt(*a, **k):
        calls["n"] += 1
        if calls["n"] == at_step:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(engines, "head_loss", interrupt)
    with pytest.raises(KeyboardInterrupt):
        regbench.train(tiny(train__epochs=epochs, train__checkpoint_every=0, **over), runs, quiet=True)
    monkeypatch.setattr(engines, "head_loss", real)
    (path,) = runs.iterdir()
    assert load_run(path).summary["epochs_done"] == (at_step - 1) // 9
    return path


def no_time(rows):
    return [{k: v for k, v in r.items() if not k.endswith("_s")} for r in rows]


@pytest.mark.parametrize("damage", ["garbage", "line2", "deleted", "binary"])
def test_resume_rebuilds_the_metrics_from_the_checkpoint_not_the_file(runs, monkeypatch, damage):
    whole = regbench.train(tiny(train__epochs=6, train__checkpoint_every=0), runs / "whole", quiet=True)
    path = interrupted_run(runs / "cut", monkeypatch)
    file = path / "metrics.jsonl"
    lines = file.read_text().splitlines()
    if damage == "garbage":
        file.write_text("garbage\n" * 16)
    elif damage == "line2":
        file.write_text("\n".join([lines[0], "{garbled", *lines[2:]]) + "\n")
    elif damage == "deleted":
        file.unlink()
    else:
        file.write_bytes(os.urandom(3000))
    run = regbench.resume(path, quiet=True)
    assert run.status == "completed" and [m["epoch"] for m in run.metrics] == [1, 2, 3, 4, 5, 6]
    assert no_time(run.metrics) == no_time(load_run(whole.path).metrics)
    assert run.summary["test_acc"] == whole.summary["test_acc"]


def edit_checkpoint(path: Path, change) -> None:
    ckpt = torch.load(path / "checkpoint.pt", weights_only=True)
    change(ckpt)
    torch.save(ckpt, path / "checkpoint.pt")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c.update(epoch=1_000_000_000), "epoch must be an integer from 1 to 6, got 1000000000"),
        (lambda c: c.update(epoch="five"), "epoch must be an integer from 1 to 6, got 'five'"),
        (lambda c: c.pop("optimizer"), "not a regbench checkpoint (no optimizer)"),
        (lambda c: c.update(model={"nonsense": torch.zeros(2)}), "does not fit the run's model or optimizer"),
        (lambda c: c["summary"].update(epochs_done=2), "its summary says 2 epochs done, its epoch is 4"),
        (lambda c: c.update(metrics=c["metrics"][:2]), "the metrics rows are not exactly epochs 1-4"),
        (lambda c: c.update(log="x"), "log must be a list"),
    ],
)
def test_a_damaged_checkpoint_is_one_line_and_the_run_is_never_left_running(runs, monkeypatch, change, message):
    path = interrupted_run(runs, monkeypatch)
    edit_checkpoint(path, change)
    res = cli.invoke(app, ["train", "--resume", str(path)])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and message in res.output, res.output
    assert load_run(path).status == "interrupted"  # as it was: never `running`; resumable once repaired


def test_a_killed_run_with_a_damaged_checkpoint_is_marked_failed_not_left_running(runs, monkeypatch):
    """A run killed mid-training reads `stopped` (`running` in its summary, its process gone); a resume
    refused by the checks records `failed` with the error instead of leaving `running`."""
    path = interrupted_run(runs, monkeypatch)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    summary = json.loads((path / "summary.json").read_text())
    summary.update(status="running", pid=int(dead.stdout))
    (path / "summary.json").write_text(json.dumps(summary))
    assert load_run(path).status == "stopped"
    edit_checkpoint(path, lambda c: c.update(epoch="five"))
    with pytest.raises(RunDirError, match="epoch must be an integer"):
        regbench.resume(path, quiet=True)
    summary = load_run(path).summary
    assert summary["status"] == "failed" and "epoch must be an integer" in summary["error"]


def test_an_edited_config_is_refused_naming_the_key(runs, monkeypatch):
    path = interrupted_run(runs, monkeypatch)
    cfg = path / "config.yaml"
    cfg.write_text(cfg.read_text().replace("chn: 4", "chn: 5"))
    res = cli.invoke(app, ["train", "--resume", str(path)])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert "model.layers was changed since the checkpoint" in res.output
    assert load_run(path).status == "interrupted"
    cfg.write_text(cfg.read_text().replace("chn: 5", "chn: 4"))  # put back: the run continues
    assert regbench.resume(path, quiet=True).status == "completed"


def test_a_run_with_no_checkpoint_yet_restarts_from_the_start(runs, monkeypatch):
    path = interrupted_run(runs, monkeypatch, at_step=3)  # epoch 1: no checkpoint written
    assert not (path / "checkpoint.pt").exists()
    run = regbench.resume(path, quiet=True)
    assert run.status == "completed" and [m["epoch"] for m in run.metrics] == [1, 2, 3, 4, 5, 6]


def test_a_run_that_fails_before_its_summary_leaves_no_folder(runs, monkeypatch):
    from regbench.rundir import RunWriter

    def full(self, summary, now=False):
        raise RunDirError(f"{self.path}/summary.json: cannot write (No space left on device)")

    monkeypatch.setattr(RunWriter, "write_summary", full)
    with pytest.raises(RunDirError, match="No space left"):
        regbench.train(tiny(), runs, quiet=True)
    assert runs.is_dir() and not list(runs.iterdir())


def test_an_empty_out_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = write(tmp_path / "c.yaml", "data: {name: synthetic, count: 60, classes: 3}\n")
    res = cli.invoke(app, ["train", str(cfg), "--out", ""])
    assert res.exit_code == 2 and "output directory is empty" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


# ----------------------------------------------------------------------------------------------- divergence
@pytest.mark.parametrize("opt", ["adam", "rmsprop"])
def test_an_exploding_loss_is_diverged_exit_3(tmp_path, opt):
    cfg = write(tmp_path / "c.yaml", f"data: {{name: synthetic, count: 120, classes: 3}}\noptimizer: {{name: {opt}, lr: 1.0e6}}\n"
                "train: {epochs: 3, batch_size: 10, threads: 1, show: 0}\n")  # fmt: skip
    res = cli.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "runs")])
    assert res.exit_code == 3 and "× the first step's" in res.output, res.output
    (path,) = (tmp_path / "runs").iterdir()
    assert load_run(path).status == "diverged"
    with pytest.raises(DivergedError):
        regbench.train(tiny(optimizer__name=opt, optimizer__lr=1e6), tmp_path / "api", quiet=True)


def test_penalty_mode_costs_never_count_as_exploding(runs):
    run = regbench.train(
        tiny(regularizer__mode="penalty", regularizer__l2_decay=1.0, regularizer__l1_decay=0.1, train__epochs=3),
        runs,
        quiet=True,
    )
    assert run.status == "completed"


def test_a_rerun_retries_trials_failed_by_dead_workers(tmp_path):
    """A trial recorded `failed` because its worker kept dying (or by an older version, after one death) is
    enqueued again by the next run of the sweep, with its params; it continues (here: its runs are done and
    read back), and is enqueued only once."""
    from regbench.experiments.study import SweepStudy, default_storage
    from regbench.experiments.sweep import load_sweep, run_sweep, sweep_status

    spec = write(
        tmp_path / "s.yaml",
        "name: s\nbase:\n  data: {name: synthetic, count: 60, classes: 3}\n  model: {layers: [8]}\n"
        "  train: {epochs: 1, batch_size: 10, show: 0, threads: 1}\nparams:\n  optimizer.lr: [0.01, 0.02]\n",
    )
    sweep, d = load_sweep(spec), tmp_path / "out" / "s"
    run_sweep(sweep, tmp_path / "out", workers=0, say=lambda line: None)
    study = SweepStudy(sweep, default_storage(d))
    study.load().enqueue_trial({"optimizer.lr": 0.01}, user_attrs={"regbench_trial": 0})
    claim = study.claim()
    study.finish(
        claim.number, claim.trial_id, "failed", error="the worker process died (exit code -9; killed for memory?)"
    )
    assert sorted(v.status for v in sweep_status(d).views) == ["completed", "failed"]
    report = run_sweep(sweep, tmp_path / "out", workers=0, say=lambda line: None)
    assert [v.status for v in report.views] == ["completed", "completed"]
    assert study.retry_lost() == 0  # the slot's latest trial is the completed copy
