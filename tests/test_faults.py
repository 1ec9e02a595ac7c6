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
  train: {epochs: 150, batch_size: 20, report: 0, show: 0, checkpoint_every: 0}
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
    assert all([m["epoch"] for m in r.metrics] == list(range(1, 151)) for r in runs)
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


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_the_command_starts_is_one_line(tmp_path, sig, code):
    """A signal while Python imports (before any run): one line and 130/143, not a traceback or −2."""
    proc = start_train(tmp_path)
    time.sleep(0.15)
    proc.send_signal(sig)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if proc.returncode in (code, -sig):  # the signal may land before Python runs any code: the shell's way
        assert "Traceback" not in err, err
    else:
        pytest.fail(f"exit {proc.returncode}: {err}")
