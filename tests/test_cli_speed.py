"""A command line that answers at once and scales: commands that train nothing import no torch, compare reads
every run's keys once, a sweep's claim reads no trial list, training imports no torch._dynamo; and the polish
around them (narrow tables, progress lines, completion, messages). Timings live in bench/cli.py, not here."""

from __future__ import annotations

import multiprocessing.process
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny, write
from rundirs import fake_run
from typer.testing import CliRunner

import regbench
from regbench.analysis import columns, compare
from regbench.cli.main import app
from regbench.experiments.study import SweepStudy
from regbench.experiments.sweep_spec import load_sweep

ROOT = Path(__file__).resolve().parents[1]
cli = CliRunner()


def python(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def loads_torch(*command: str, cwd: Path = ROOT) -> bool:
    """Whether `regbench COMMAND` imported torch (it must succeed)."""
    code = (
        "import sys\nfrom regbench.cli.main import main\nsys.argv = ['regbench', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO TORCH', file=sys.stderr)\n"
    )
    res = python("-c", code, *command, cwd=cwd)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stderr.strip().endswith("TORCH") and not res.stderr.strip().endswith("NO TORCH")


# ----------------------------------------------------------------------------------------------- no torch
def test_commands_that_train_nothing_import_no_torch(tmp_path):
    for i in range(3):
        fake_run(tmp_path / "runs" / f"r{i}", seed=i, summary={"test_acc": 0.5 + i / 10})
    sweep = write(
        tmp_path / "s.yaml",
        "base: {data: {name: synthetic, count: 60}, model: {layers: [4]}, train: {epochs: 1, show: 0, threads: 1}}\n"
        "params: {optimizer.lr: [0.1, 0.05]}\n",
    )
    regbench.api.sweep(regbench.api.load_sweep(sweep), tmp_path / "sweeps", workers=0, say=None)
    assert not loads_torch("compare", str(tmp_path / "runs"), "--format", "csv")
    assert not loads_torch("datasets")
    assert not loads_torch("suite", "--list")
    assert not loads_torch("sweep", "--status", str(tmp_path / "sweeps" / "s"))
    # report imports torch only for the figures that need a trained model
    res = python("-c", "import sys, regbench.analysis.report; print('torch' in sys.modules)")
    assert res.stdout.strip() == "False", res.stderr


def test_training_imports_no_dynamo_and_torch_optimizers_step_as_before(tmp_path, monkeypatch):
    res = python(
        "-c",
        "import sys, regbench\nfrom conftest import tiny\n"
        f"regbench.train(tiny(optimizer__name='adam'), {str(tmp_path / 'a')!r}, quiet=True)\n"
        "print(sorted(m for m in ('torch._dynamo', 'sklearn') if m in sys.modules))",
        cwd=ROOT / "tests",
    )
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stdout + res.stderr
    from regbench import optim

    for name in ("adam", "momentum", "rmsprop"):
        ours = regbench.train(tiny(optimizer__name=name), tmp_path / "ours", quiet=True)
        monkeypatch.setattr(optim, "plain_step", lambda opt: None)  # torch's own wrapped step
        theirs = regbench.train(tiny(optimizer__name=name), tmp_path / "theirs", quiet=True)
        monkeypatch.undo()
        assert (
            numbers(ours.metrics) == numbers(theirs.metrics) and ours.summary["test_acc"] == theirs.summary["test_acc"]
        )


def numbers(rows: list[dict]) -> list[dict]:
    """Metrics rows without their timings."""
    return [{k: v for k, v in row.items() if not k.endswith("_s") and "time" not in k} for row in rows]


def test_digits_are_read_without_scikit_learn_and_equal_load_digits():
    sklearn = pytest.importorskip("sklearn.datasets")
    import numpy as np

    from regbench.data.digits import read_digits

    x, y = read_digits()
    d = sklearn.load_digits()
    assert np.array_equal(x, d.data) and np.array_equal(y, d.target)


# ----------------------------------------------------------------------------------------------- scale
def test_compare_reads_the_runs_keys_once_per_table(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    for i in range(6):
        fake_run(root / f"r{i}", seed=i, optimizer__lr=0.1 * (1 + i % 2), summary={"test_acc": 0.5 + i / 20})
    walks = []
    real = columns.known_keys
    monkeypatch.setattr(columns, "known_keys", lambda runs: walks.append(len(runs)) or real(runs))
    comp = compare.compare(
        [root], columns="name,optimizer.lr,test_acc,seed", where=["optimizer.lr>0.05"], sort="-test_acc", baseline="r0"
    )
    assert walks == [6]  # one walk over the six runs for --columns, --where, --sort and --metric together
    assert comp.rows[0].label == "tiny [optimizer.lr=0.2]" and comp.rows[0].n == 3  # sorted by mean, descending
    with pytest.raises(compare.CompareError, match=r"--columns: unknown key 'optimizer\.lrr' \(close: optimizer\.lr"):
        compare.compare([root], columns="optimizer.lrr")


def test_a_claim_reads_no_trial_list(tmp_path, monkeypatch):
    """Grid and random slots are claimed and finished without reading every trial of the study."""
    sweep = load_sweep(
        {
            "name": "big",
            "method": "random",
            "trials": 30,
            "base": {"data": {"name": "synthetic"}, "model": {"layers": [4]}},
            "params": {"optimizer.lr": {"low": 1e-3, "high": 1.0, "log": True}, "model.layers": [[4], [8]]},
        }
    )
    study = SweepStudy(sweep, f"sqlite:///{tmp_path}/study.db")
    study.ensure(say=lambda _line: None)
    fixed = sweep.fixed_points()
    monkeypatch.setattr(study.storage, "get_all_trials", lambda *a, **k: pytest.fail("a claim read every trial"))
    for slot in range(3):
        claim = study.claim()
        assert claim.slot == slot and claim.params == fixed[slot]
        assert study.finish(claim.number, claim.trial_id, "completed", value=0.5)
    monkeypatch.undo()
    trials = study.trials()
    assert [t.state.name for t in trials[:4]] == ["COMPLETE", "COMPLETE", "COMPLETE", "WAITING"]
    assert trials[0].params["optimizer.lr"] == fixed[0]["optimizer.lr"] and trials[0].value == 0.5


# ----------------------------------------------------------------------------------------------- tables
def test_a_narrow_table_keeps_name_regularizer_metric_p_and_verdict(tmp_path):
    import io

    from rich.console import Console

    root = tmp_path / "runs"
    for i, l2 in enumerate((0.0, 0.0, 0.01, 0.01)):
        fake_run(root / f"r{i}", seed=i, regularizer__l2_decay=l2, summary={"test_acc": 0.5 + i / 10})
    extra = "optimizer.lr,optimizer.momentum,train.batch_size,data.count,seed,model.activation"
    comp = compare.compare([root], columns=f"name,model,regularizer,optimizer,{extra},test_acc", baseline="r0")
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(comp.to_rich(80))
    text = " ".join(console.export_text().split())
    header = text.split("┃", 1)[1]
    for kept in ("name", "regularizer", "test acc", "p", "verdict"):
        assert f" {kept} " in header, (kept, text)
    hidden = text.split("hidden to fit 80 columns:")[1]
    assert "model.activation" in hidden and "regularizer" not in hidden  # picked columns go, right to left


def test_datasets_fit_an_80_column_terminal(monkeypatch):
    import rich.console

    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr(rich.console.Console, "is_terminal", property(lambda self: True))
    res = cli.invoke(app, ["datasets"], color=False)
    assert res.exit_code == 0, res.output
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).rstrip() for line in res.output.splitlines()]  # no colours
    assert max(len(line) for line in lines) <= 80
    assert any(line.startswith("digits ") and "10 classes" in line and "built in" in line for line in lines)
    assert any("files: data/MNIST/raw/" in line for line in lines)


# ----------------------------------------------------------------------------------------------- messages
def test_a_batch_larger_than_the_training_split_names_both_numbers(tmp_path):
    cfg = write(tmp_path / "c.yaml", "data: {name: synthetic, count: 60}\ntrain: {batch_size: 500, show: 0}\n")
    res = cli.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "runs")])
    assert res.exit_code == 2
    line = res.output.strip()
    assert line.startswith(f"error: {cfg}: train.batch_size: 500 is larger than the training split (40 samples)")
    assert "Traceback" not in res.output and not (tmp_path / "runs").exists()


def test_validate_says_what_a_sweep_or_suite_file_is(tmp_path):
    sweep = write(tmp_path / "s.yaml", "base: {data: {name: digits}}\nparams: {optimizer.lr: [0.1]}\n")
    res = cli.invoke(app, ["validate", str(sweep)])
    assert res.exit_code == 2 and "this is a sweep file (base: and params:)" in res.output
    assert f"`regbench sweep {sweep}`" in res.output
    res = cli.invoke(app, ["validate", str(ROOT / "configs" / "suites.yaml")])
    assert res.exit_code == 2 and "this is a suites file (groups flowers-l2-l1" in res.output
    assert "regbench suite NAME --file" in res.output
    group = write(tmp_path / "g.yaml", "configs: [a.yaml]\n")
    res = cli.invoke(app, ["validate", str(group)])
    assert res.exit_code == 2 and "this is a suite file (a group with configs:)" in res.output


def test_ctrl_c_names_the_run_directory(tmp_path, monkeypatch):
    from regbench.training import execute

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(execute, "fit_all", interrupted)
    cfg = write(tmp_path / "c.yaml", "data: {name: synthetic, count: 60}\ntrain: {show: 0}\n")
    res = cli.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "runs")])
    (path,) = (tmp_path / "runs").iterdir()
    assert res.exit_code == 130
    assert f"interrupted; {path} kept with status 'interrupted'" in res.output
    assert f"regbench train --resume {path}" in res.output


def test_piped_sweeps_print_plain_progress_lines(tmp_path):
    sweep = write(
        tmp_path / "s.yaml",
        "base: {data: {name: synthetic, count: 60}, model: {layers: [4]}, train: {epochs: 1, show: 0, threads: 1}}\n"
        "params: {optimizer.lr: [0.1, 0.05]}\n",
    )
    res = cli.invoke(app, ["sweep", str(sweep), "--out", str(tmp_path / "out"), "--workers", "0"])
    assert res.exit_code == 0, res.output
    assert "progress: 1/2 trials done" in res.output and "progress: 2/2 trials done" in res.output
    quiet = cli.invoke(app, ["sweep", str(sweep), "--out", str(tmp_path / "out2"), "--workers", "0", "--quiet"])
    assert quiet.exit_code == 0 and "progress:" not in quiet.output


def test_shell_completion_is_on(monkeypatch):
    # typer's own switch for naming the shell (a test has no interactive shell to detect)
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    res = python("-m", "regbench", "--show-completion", "bash")
    assert res.returncode == 0, res.stderr
    assert "_REGBENCH_COMPLETE=complete_bash" in res.stdout and res.stdout.rstrip().endswith(" regbench")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "_REGBENCH_COMPLETE": "complete_bash"}
    env.update(COMP_WORDS="regbench sweep --st", COMP_CWORD="2")
    done = subprocess.run([sys.executable, "-m", "regbench"], capture_output=True, text=True, env=env, timeout=120)
    assert {"--status", "--storage", "--stack"} <= set(done.stdout.split())


# ----------------------------------------------------------------------------------------------- under load
def test_a_worker_the_system_cannot_start_is_one_error_line(tmp_path, monkeypatch):
    from regbench import runner

    def refused(self):
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", refused)
    monkeypatch.setattr(runner, "START_RETRIES_S", (0.0,))
    sweep = write(
        tmp_path / "s.yaml",
        "base: {data: {name: synthetic, count: 60}, model: {layers: [4]}, train: {epochs: 1, show: 0}}\n"
        "params: {optimizer.lr: [0.1, 0.05]}\n",
    )
    res = cli.invoke(app, ["sweep", str(sweep), "--out", str(tmp_path / "out"), "--workers", "2"])
    assert res.exit_code == 1, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: cannot start a worker process (BlockingIOError: [Errno 11] Resource temporarily unavailable): the"
        " machine is out of processes or memory; retry when it is less busy, or with fewer --workers (0 trains in"
        " this process)"
    ]
    assert "Traceback" not in res.output
