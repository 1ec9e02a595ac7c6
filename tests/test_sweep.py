"""`regbench sweep`: the sweep file, trial points, the book's ranked lines, running, resuming, sharing a study."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import write
from typer.testing import CliRunner

from regbench import runner as runner_mod
from regbench.cli.main import app
from regbench.core.errors import ConfigError
from regbench.experiments.sweep import (
    SweepError,
    SweepInterrupted,
    TrialView,
    best_line,
    labels,
    load_sweep,
    run_sweep,
    sweep_status,
    trial_line,
)
from regbench.rundir import load_run

cli = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
BASE = """
base:
  data: {name: digits, limit: {train: 100, val: 50, test: 50}}
  model: {layers: [16]}
  optimizer: {name: sgd, lr: 0.1}
  train: {epochs: EPOCHS, batch_size: 20, report: 0, show: 0, checkpoint_every: 0}  # every epoch: resumes are exact to the epoch
"""
GRID6 = """
name: g6
params:
  optimizer.lr: [0.05, 0.1, 0.2]
  regularizer.l2_decay: [0.0, 0.001]
"""
RANDOM6 = """
name: r6
method: random
trials: 6
seed: 3
params:
  optimizer.lr: {low: 1.0e-3, high: 0.3, log: true}
  model.layers: [[16], [16, 16]]
"""
BEST = re.compile(r"^Best-(\d+)\(val acc:(\d\.\d+)\) \| lr:([0-9.e+-]+), weight decay:([0-9.e+-]+)$")


def sweep_file(tmp_path: Path, body: str, epochs: int = 2, name: str = "s.yaml") -> Path:
    return write(tmp_path / name, body + BASE.replace("EPOCHS", str(epochs)))


def index(sweep_dir: Path) -> dict:
    return json.loads((sweep_dir / "sweep.json").read_text())


def quiet(_line: str) -> None:
    pass


# ----------------------------------------------------------------------------------------------- the file
@pytest.mark.parametrize(
    "body, expected",
    [
        ("params: {optimizer.lr: {low: 0.1}}", "s.yaml: params.optimizer.lr.high: a range needs both low and high"),
        ("params: {optimizer.lr: {low: 0.1, high: 1}}", "params.optimizer.lr: a grid needs a list of values"),
        ("method: random\nparams: {optimizer.lr: [0.1]}", "s.yaml: trials: method random needs trials: N"),
        (
            "metrc: val_acc\nparams: {optimizer.lr: [0.1]}",
            "s.yaml: metrc: unknown key 'metrc' (did you mean 'metric'?)",
        ),
        ("params: {optimizer.lr: [0.1, 0.1]}", "params.optimizer.lr.values: lists a value twice"),
        ("metric: val_loss\ndirection: maximize\nparams: {optimizer.lr: [0.1]}", "direction: val_loss is better lower"),
        ("params: {optimizer.lr: {low: 0, high: 1, log: true}}", "params.optimizer.lr.low: must be > 0 with log: true"),
        ("params: {name: [a, b]}", "params.name: the runs are named by the sweep"),
        ("params: []", "s.yaml: params: expected a mapping of config keys"),
        ("method: grid\ntrials: 5\nparams: {optimizer.lr: [0.1, 0.2]}", "trials: a grid runs all its 2 points"),
        (
            "params:\n  model.layers[0].width: [8]\n  model.layers: [[16]]",
            "params.model.layers[0].width: lies inside params.model.layers, which replaces it",
        ),
        (
            "set:\n  model.layers[0].width: 8\nparams:\n  model.layers: [[16]]",
            "set.model.layers[0].width: params.model.layers replaces it in every trial",
        ),
        (
            "set:\n  model.layers[3].width: 8\nparams: {optimizer.lr: [0.1]}",
            "s.yaml: set.model.layers[3].width: no entry [3]",
        ),
    ],
)
def test_sweep_file_errors_are_one_line_naming_the_key(tmp_path, body, expected):
    with pytest.raises(ConfigError) as e:
        load_sweep(sweep_file(tmp_path, body + "\n"))
    assert expected in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "params, expected",
    [
        ("optimizer.lr: [0.1, -1]", "s.yaml: params.optimizer.lr: value -1 (trial t001): must be > 0"),
        (
            "optimizer.lrr: [0.1]",
            "params.optimizer.lrr: value 0.1 (trial t000): unknown key 'lrr' (did you mean 'lr'?)",
        ),
        ("model.layers: [[16], [[dropout, {keep_prob: 0}]]]", "params.model.layers: value [['dropout'"),
    ],
)
def test_bad_trial_values_fail_before_any_work(tmp_path, params, expected):
    sweep = load_sweep(sweep_file(tmp_path, f"params:\n  {params}\n"))
    with pytest.raises(ConfigError) as e:
        run_sweep(sweep, tmp_path / "out", workers=0, say=quiet)
    assert expected in str(e.value)
    assert not (tmp_path / "out").exists()


def test_base_may_be_a_file_next_to_the_sweep_and_set_overrides_it(tmp_path):
    (tmp_path / "cfg").mkdir()
    write(tmp_path / "cfg" / "mlp.yaml", "data: {name: digits}\nmodel: {layers: [8]}\ntrain: {epochs: 5}\n")
    s = load_sweep(
        write(tmp_path / "cfg" / "sw.yaml", "base: mlp.yaml\nset: {train.epochs: 1}\nparams: {seed: [1, 2]}\n")
    )
    assert s.name == "sw" and s.trials == 2 and s.base["train"]["epochs"] == 1
    cfg = s.trial_config(s.points()[1], 1, k=2)
    assert cfg.name == "sw-t001" and cfg.seed == 3 and cfg.train.epochs == 1 and cfg.model.layers[0][1]["width"] == 8
    with pytest.raises(ConfigError, match=r"sw2.yaml: base: config file .*nope.yaml not found"):
        load_sweep(write(tmp_path / "cfg" / "sw2.yaml", "base: nope.yaml\nparams: {seed: [1]}\n"))
    with pytest.raises(ConfigError, match=r"sw3.yaml: base.model.layers\[0\]"):
        load_sweep(
            write(
                tmp_path / "cfg" / "sw3.yaml",
                "base: {model: {layers: [[dropout, {keep_prob: 2}]]}}\nparams: {seed: [1]}\n",
            )
        )


def test_grid_and_random_points_are_deterministic(tmp_path):
    grid = load_sweep(sweep_file(tmp_path, GRID6))
    assert grid.trials == 6 and grid.points()[:3] == [
        {"optimizer.lr": 0.05, "regularizer.l2_decay": 0.0},
        {"optimizer.lr": 0.05, "regularizer.l2_decay": 0.001},
        {"optimizer.lr": 0.1, "regularizer.l2_decay": 0.0},
    ]
    a = load_sweep(sweep_file(tmp_path, RANDOM6)).points()
    b = load_sweep(sweep_file(tmp_path, RANDOM6)).points()
    c = load_sweep(sweep_file(tmp_path, RANDOM6.replace("seed: 3", "seed: 4"))).points()
    assert a == b != c and len(a) == 6
    assert all(1e-3 <= p["optimizer.lr"] <= 0.3 and p["model.layers"] in ([16], [16, 16]) for p in a)
    hw = load_sweep(ROOT / "configs" / "dlfs" / "lr_wd_search.yaml")
    pts = hw.points()
    assert hw.trials == 100 and len(pts) == 100
    assert all(1e-6 <= p["optimizer.lr"] <= 1e-2 and 1e-8 <= p["regularizer.l2_decay"] <= 1e-4 for p in pts)
    assert min(p["optimizer.lr"] for p in pts) < 1e-5 and max(p["optimizer.lr"] for p in pts) > 1e-3  # log-uniform


def test_book_lines_and_labels():
    s = load_sweep(
        {"base": {"data": {"name": "digits"}}, "params": {"optimizer.lr": [0.1], "regularizer.l2_decay": [0.0]}}
    )
    v = TrialView(
        0,
        "t000",
        {"optimizer.lr": 0.008725857704941933, "regularizer.l2_decay": 5.3321135380693484e-08},
        "completed",
        0.73,
    )
    assert best_line(1, v, s) == "Best-1(val acc:0.73) | lr:0.008725857704941933, weight decay:5.3321135380693484e-08"
    assert trial_line(v, s) == "val acc:0.73 | lr:0.008725857704941933, weight decay:5.3321135380693484e-08"
    v.value, v.std = 2 / 3, 0.0123456
    assert trial_line(v, s).startswith("val acc:0.6667±0.0123 | lr:")
    v.status, v.error = (
        "diverged",
        "s-t000: loss became nan in epoch 1, step 2 of 5 (step 2 of the run); the run is marked diverged and ...",
    )
    assert trial_line(v, s).startswith("diverged | lr:0.0087") and trial_line(v, s).endswith(
        "(loss became nan in epoch 1, step 2 of 5 (step 2 of the run))"
    )
    assert labels(["optimizer.lr", "model.layers", "model.init.std", "data.std"]) == {
        "optimizer.lr": "lr",
        "model.layers": "layers",
        "model.init.std": "model.init.std",
        "data.std": "data.std",
    }


# ----------------------------------------------------------------------------------------------- running
def test_six_trial_grid_writes_run_dirs_the_index_and_the_ranking(tmp_path):
    sweep = load_sweep(sweep_file(tmp_path, GRID6))
    lines: list[str] = []
    report = run_sweep(sweep, tmp_path / "out", workers=0, say=lines.append)
    d = tmp_path / "out" / "g6"
    assert report.counts["completed"] == 6 and len(lines) == 6
    assert all(re.fullmatch(r"val acc:\d\.\d+ \| lr:0\.\d+, weight decay:0\.0(01)?", line) for line in lines)
    data = index(d)
    assert data["study"] == sweep.study_name and data["counts"] == {"completed": 6} and len(data["trial_list"]) == 6
    for t in data["trial_list"]:
        (run,) = t["runs"]
        assert run["dir"] == f"g6-{t['key']}-s1" and run["status"] == "completed"
        loaded = load_run(d / run["dir"])
        assert (
            loaded.config["name"] == f"g6-{t['key']}"
            and loaded.config["optimizer"]["lr"] == t["params"]["optimizer.lr"]
        )
        assert t["metric"] == loaded.metrics[-1]["val_acc"] == loaded.summary["val_acc"]  # the last epoch's
    ranking = report.ranking_lines()
    assert ranking[0] == "===== Hyper-Parameter Optimization Result =====" and len(ranking) == 7
    accs = [float(BEST.match(line).group(2)) for line in ranking[1:]]
    assert accs == sorted(accs, reverse=True) and [int(BEST.match(x).group(1)) for x in ranking[1:]] == [
        1,
        2,
        3,
        4,
        5,
        6,
    ]
    comp = report.compare(3)
    assert [r.runs[0].path.name for r in comp.rows] == [v.runs[0]["dir"] for v in report.ranked()[:3]]

    # the CLI: --status prints the same ranking, a compare table of the best, and the counts; a rerun trains nothing
    res = cli.invoke(
        app, ["sweep", "--status", str(d), "--top", "3", "--table", "2", "--plot", str(tmp_path / "c.png")]
    )
    assert res.exit_code == 0, res.output
    out = res.output.splitlines()
    start = out.index("===== Hyper-Parameter Optimization Result =====")
    assert out[start + 1 : start + 4] == ranking[1:4] and all(BEST.match(x) for x in out[start + 1 : start + 4])
    assert "g6-t" in res.output and "6 trials: 6 completed; sweep saved in" in res.output
    assert (tmp_path / "c.png").stat().st_size > 1000
    res = cli.invoke(app, ["sweep", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "out"), "--workers", "0"])
    assert res.exit_code == 0 and "val acc:" not in res.output.split("=====")[0]  # nothing ran again


def test_six_trial_random_sweep_on_two_worker_processes_with_seeds(tmp_path):
    sweep = load_sweep(sweep_file(tmp_path, RANDOM6 + "seeds: 2\n"))
    report = run_sweep(sweep, tmp_path / "out", workers=2, say=quiet)
    assert report.counts["completed"] == 6
    for v in report.views:
        assert [r["seed"] for r in v.runs] == [1234, 1235] and len(v.values) == 2
        assert v.value == pytest.approx(sum(v.values) / 2) and v.std is not None
        assert v.params == sweep.points()[v.slot]
    comp = report.compare(2)
    assert all(row.n == 2 for row in comp.rows)  # the seeds of a trial are one compare row (mean ± std)


def test_resume_after_ctrl_c_runs_only_the_missing_trials(tmp_path, monkeypatch):
    sweep = load_sweep(sweep_file(tmp_path, GRID6, epochs=3))
    real = runner_mod.execute
    calls: list[str] = []

    def interrupting(task):
        calls.append(task.key)
        if len(calls) == 3:  # Ctrl-C during the first epoch... after it: the run keeps a checkpoint
            task.on_epoch = lambda row: os.kill(os.getpid(), signal.SIGINT)
        return real(task)

    monkeypatch.setattr(runner_mod, "execute", interrupting)
    with pytest.raises(SweepInterrupted, match="interrupted: 2 of 6 trials finished"):
        run_sweep(sweep, tmp_path / "out", workers=0, say=quiet, stack=1)  # one run at a time
    d = tmp_path / "out" / "g6"
    statuses = {t["key"]: t["status"] for t in index(d)["trial_list"]}
    assert statuses == dict(
        t000="completed", t001="completed", t002="interrupted", t003="pending", t004="pending", t005="pending"
    )
    stopped = load_run(d / "g6-t002-s1")
    assert stopped.status == "interrupted" and stopped.summary["epochs_done"] == 1

    calls.clear()
    monkeypatch.setattr(runner_mod, "execute", lambda task: calls.append(task.key) or real(task))
    report = run_sweep(sweep, tmp_path / "out", workers=0, say=quiet, stack=1)
    assert sorted(calls) == ["g6-t002-s1", "g6-t003-s1", "g6-t004-s1", "g6-t005-s1"]
    assert report.counts["completed"] == 6
    resumed = load_run(d / "g6-t002-s1")
    assert resumed.summary["resumed"][0]["after_epoch"] == 1 and resumed.summary["epochs_done"] == 3


def start_sweep(tmp_path: Path, trials: int, epochs: int = 400, **popen):
    """`regbench sweep` of RANDOM6 with `trials` trials of `epochs` epochs on 2 workers, as its own process group."""
    path = sweep_file(tmp_path, RANDOM6.replace("trials: 6", f"trials: {trials}"), epochs=epochs)
    cmd = [sys.executable, "-m", "regbench", "sweep", str(path), "--out", str(tmp_path / "out"), "--workers", "2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return cmd, env, subprocess.Popen(cmd, env=env, start_new_session=True, **popen)


def wait_for_checkpoints(sweep_dir: Path, n: int, proc: subprocess.Popen | None = None, timeout: float = 600) -> None:
    """Until `n` runs have a checkpoint: however long a busy machine takes to start the workers, but failing
    at once (with the sweep's output) if the sweep process ended first."""
    deadline = time.monotonic() + timeout
    while len(list(sweep_dir.glob("r6-t*-s1/checkpoint.pt"))) < n:
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the sweep ended (exit code {proc.returncode}) before {n} runs had a checkpoint:\n{out}{err}")
        if time.monotonic() > deadline:
            pytest.fail(f"fewer than {n} runs had a checkpoint after {timeout:.0f} s")
        time.sleep(0.2)


def checkpointed_epochs(summary: Path) -> int:
    """The epochs a run's last checkpoint holds, as the summary written with it says (0 while unreadable)."""
    try:
        return int(json.loads(summary.read_text(encoding="utf-8")).get("epochs_done", 0))
    except (OSError, ValueError):
        return 0


def test_a_killed_sweep_continues_where_it_stopped(tmp_path):
    """SIGKILL to the sweep and its workers mid-trial; the same command continues the killed runs."""
    cmd, env, proc = start_sweep(tmp_path, 3, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    d = tmp_path / "out" / "r6"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until two runs have a checkpoint past epoch 2 and are not finished
        # (summary.json is written with each checkpoint; under load one trial may run all 400 epochs before the
        # other worker's first two, and side by side a checkpoint may lag the metrics by a few epochs)
        done = [p for p in d.glob("r6-t*-s1/summary.json") if 2 <= checkpointed_epochs(p) < 399]
        if len(done) >= 2:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = [load_run(p.parent) for p in done]
    assert all(r.status == "running" and r.summary["epochs_done"] < 400 for r in killed)
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "3 trials: 3 completed" in res.stdout
    for r in killed:
        again = load_run(r.path)
        assert again.status == "completed" and again.summary["resumed"][0]["after_epoch"] >= 2


def test_ctrl_c_stops_the_worker_processes_cleanly(tmp_path):
    """SIGINT to the whole process group, as a terminal's Ctrl-C: every run is marked interrupted, exit 130.

    Nothing here depends on the machine being idle: the trials are far longer than the test (so neither can
    finish before the other has started, however slowly the second worker starts), the test waits for both
    checkpoints as long as the workers take to start, and the workers' clean stop gets minutes."""
    _, _, proc = start_sweep(tmp_path, 2, epochs=1_000_000, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    d = tmp_path / "out" / "r6"
    wait_for_checkpoints(d, 2, proc)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, out + err
    assert err.startswith("error: interrupted: 0 of 2 trials finished") and "Traceback" not in err, err
    runs = [load_run(p) for p in sorted(d.glob("r6-t*-s1"))]
    assert [r.status for r in runs] == ["interrupted", "interrupted"]
    assert all(0 < r.summary["epochs_done"] < 1_000_000 and (r.path / "checkpoint.pt").is_file() for r in runs)
    assert [t["status"] for t in index(d)["trial_list"]] == ["interrupted", "interrupted"]


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
def test_workers_stop_their_runs_cleanly_when_the_sweep_process_is_killed(tmp_path):
    _, _, proc = start_sweep(tmp_path, 2, epochs=1_000_000, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    d = tmp_path / "out" / "r6"
    wait_for_checkpoints(d, 2, proc)
    proc.kill()  # the sweep process only: its workers get SIGINT from the kernel
    proc.wait()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        statuses = [load_run(p).status for p in sorted(d.glob("r6-t*-s1"))]
        if statuses == ["interrupted", "interrupted"]:
            break
        time.sleep(0.2)
    assert statuses == ["interrupted", "interrupted"]
    deadline = time.monotonic() + 20
    while _group_alive(proc.pid) and time.monotonic() < deadline:  # and no orphan keeps running
        time.sleep(0.2)
    if _group_alive(proc.pid):
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("worker processes outlived the sweep process")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_two_processes_share_one_sqlite_study_and_never_run_a_trial_twice(tmp_path):
    path = sweep_file(tmp_path, RANDOM6.replace("trials: 6", "trials: 8"), epochs=30)
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}  # two processes on 2 shared cores

    def start(out: str):
        cmd = [sys.executable, "-m", "regbench", "sweep", str(path), "--out", str(tmp_path / out)]
        cmd += ["--workers", "0", "--storage", storage, "--table", "0", "--stack", "2"]  # small batches: both claim
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    procs = [start("a"), start("b")]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    ran = {out: sorted(x.name for x in (tmp_path / out / "r6").glob("r6-t*")) for out in ("a", "b")}
    assert not set(ran["a"]) & set(ran["b"]) and len(ran["a"]) + len(ran["b"]) == 8, ran
    assert ran["a"] and ran["b"], ran  # both took part
    import optuna

    study = optuna.load_study(study_name=load_sweep(path).study_name, storage=storage)
    assert len(study.trials) == 8 and {t.state.name for t in study.trials} == {"COMPLETE"}
    assert sorted(t.user_attrs["regbench_trial"] for t in study.trials) == list(range(8))
    for out in outs:  # each process prints the whole study's ranking, its own trials and the other's
        assert out.count("Best-") == 8 and "8 trials: 8 completed" in out
    report = sweep_status(tmp_path / "a" / "r6", storage=storage)
    assert report.counts["completed"] == 8 and {v.host for v in report.views} == {os.uname().nodename}


def test_a_trial_whose_machine_went_silent_is_handed_to_the_next_process(tmp_path, monkeypatch):
    """Another host took t000 and stopped beating: after the grace period it is re-enqueued with its params."""
    from regbench.experiments import study as study_mod

    monkeypatch.setattr(study_mod, "HEARTBEAT_S", 1)
    monkeypatch.setattr(study_mod, "GRACE_S", 1)
    monkeypatch.setattr(study_mod, "_STORAGES", {})
    sweep = load_sweep(sweep_file(tmp_path, RANDOM6))
    st = study_mod.SweepStudy(sweep, f"sqlite:///{tmp_path / 'st.db'}")
    st.ensure(say=quiet)
    lost = st.claim()
    st.storage.set_trial_user_attr(lost.trial_id, study_mod.OWNER, {"host": "elsewhere", "pid": 1})
    assert [c.slot for c in (st.claim(), st.claim())] == [1, 2]  # t000 is running "elsewhere"
    assert [ft.number for ft in st.running_elsewhere()] == [lost.number]
    time.sleep(2.5)
    st.reap()
    others = [st.claim() for _ in range(4)]
    assert [c.slot for c in others] == [3, 4, 5, 0] and others[-1].params == lost.params == sweep.points()[0]
    views = {v.slot: v for v in run_sweep_views(sweep, st, tmp_path)}
    assert views[0].status == "running" and views[0].optuna_trials == [lost.number, others[-1].number]


def run_sweep_views(sweep, st, tmp_path):
    from regbench.experiments.sweep import views_from_study

    return views_from_study(sweep, st.trials(), tmp_path)


def test_an_absurd_lr_diverges_and_the_sweep_still_finishes(tmp_path):
    path = sweep_file(tmp_path, "name: div\nparams:\n  optimizer.lr: [0.1, 1.0e+30, 0.2]\n")
    res = cli.invoke(app, ["sweep", str(path), "--out", str(tmp_path / "out"), "--workers", "0"])
    assert res.exit_code == 0, res.output
    assert re.search(r"^diverged \| lr:1e\+30 \(loss became (nan|inf)", res.output, re.M)
    assert "3 trials: 2 completed, 1 diverged" in res.output and res.output.count("Best-") == 2
    t = index(tmp_path / "out" / "div")["trial_list"][1]
    assert t["status"] == "diverged" and t["metric"] is None and "epoch 1" in t["error"]
    assert load_run(tmp_path / "out" / "div" / "div-t001-s1").status == "diverged"


def test_median_pruning_stops_hopeless_trials_and_skips_their_other_seeds(tmp_path):
    body = """
name: pr
seeds: 2
prune: {type: median, startup_trials: 2}
params:
  optimizer.lr: [0.01, 0.02, 1.0e-7, 2.0e-7]
  optimizer.name: [adam]
"""
    sweep = load_sweep(sweep_file(tmp_path, body, epochs=4))
    report = run_sweep(sweep, tmp_path / "out", workers=0, say=quiet)
    assert [v.status for v in report.views] == ["completed", "completed", "pruned", "pruned"]
    d = tmp_path / "out" / "pr"
    pruned = load_run(d / "pr-t002-s1")
    assert (
        pruned.status == "pruned"
        and pruned.summary["epochs_done"] < 4
        and "worse than the median" in pruned.summary["pruned"]
    )
    assert not (d / "pr-t002-s2").exists()  # the second seed of a pruned trial never starts


def test_tpe_proposes_points_within_the_ranges(tmp_path):
    body = """
name: tpe
method: tpe
trials: 5
tpe_startup: 2
params:
  optimizer.lr: {low: 1.0e-3, high: 0.5, log: true}
  train.batch_size: {low: 10, high: 30, type: int}
  model.layers: {choices: [[16], [8, 8]]}
"""
    sweep = load_sweep(sweep_file(tmp_path, body))
    report = run_sweep(sweep, tmp_path / "out", workers=0, say=quiet)
    assert report.counts["completed"] == 5
    for v in report.views:
        p = v.params
        assert (
            1e-3 <= p["optimizer.lr"] <= 0.5
            and 10 <= p["train.batch_size"] <= 30
            and p["model.layers"] in ([16], [8, 8])
        )
        assert (
            load_run(tmp_path / "out" / "tpe" / v.runs[0]["dir"]).config["train"]["batch_size"] == p["train.batch_size"]
        )
    assert [v.params for v in report.views[:2]] == sweep.points()  # the random start points


# ----------------------------------------------------------------------------------------------- the CLI
def test_dry_run_lists_the_trials_and_writes_nothing(tmp_path):
    path = sweep_file(tmp_path, GRID6)
    res = cli.invoke(app, ["sweep", str(path), "--dry-run", "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].startswith(
        "g6: grid, 6 trials × 1 seed = 6 runs; val_acc (val acc), maximize; lr ∈ {0.05, 0.1, 0.2}"
    )
    assert lines[2:] == [
        "t000  lr:0.05, weight decay:0.0",
        "t001  lr:0.05, weight decay:0.001",
        "t002  lr:0.1, weight decay:0.0",
        "t003  lr:0.1, weight decay:0.001",
        "t004  lr:0.2, weight decay:0.0",
        "t005  lr:0.2, weight decay:0.001",
    ]
    assert not (tmp_path / "out").exists()


def test_cli_errors_are_one_line_with_exit_2(tmp_path):
    res = cli.invoke(app, ["sweep"])
    assert res.exit_code == 2 and "give a SWEEP file to run, or --status SWEEP_DIR" in res.output
    bad = write(tmp_path / "bad.yaml", "params: {optimizer.lr: [0.1]}\n")
    res = cli.invoke(app, ["sweep", str(bad)])
    assert res.exit_code == 2 and res.output.strip() == f"error: {bad}: base: missing required key 'base'"
    res = cli.invoke(app, ["sweep", "--status", str(tmp_path)])
    assert res.exit_code == 2 and "not a sweep directory (no sweep.json)" in res.output
    nodata = write(
        tmp_path / "mn.yaml", f"base: {{data: {{name: mnist, root: {tmp_path / 'none'}}}}}\nparams: {{seed: [1, 2]}}\n"
    )
    res = cli.invoke(app, ["sweep", str(nodata), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2 and res.output.startswith("error: data set 'mnist': missing train-images-idx3-ubyte")
    assert "regbench data fetch mnist" in res.output and not (tmp_path / "out").exists()  # not one failure per trial


def test_a_changed_sweep_file_does_not_mix_into_an_old_sweep_folder(tmp_path):
    path = sweep_file(tmp_path, "name: same\nparams: {optimizer.lr: [0.1]}\n")
    run_sweep(load_sweep(path), tmp_path / "out", workers=0, say=quiet)
    changed = load_sweep(sweep_file(tmp_path, "name: same\nparams: {optimizer.lr: [0.2]}\n", name="s2.yaml"))
    with pytest.raises(SweepError, match="holds another sweep"):
        run_sweep(changed, tmp_path / "out", workers=0, say=quiet)
    with pytest.raises(SweepError, match="pass the same --storage"):
        run_sweep(load_sweep(path), tmp_path / "out", workers=0, storage=f"sqlite:///{tmp_path / 'x.db'}", say=quiet)


def test_run_trials_turns_every_bad_run_into_a_result(tmp_path):
    good = {"data": {"name": "digits", "limit": {"train": 50, "val": 20, "test": 20}}, "model": {"layers": [8]}}
    good["train"] = {"epochs": 1, "batch_size": 10, "show": 0}
    tasks = [
        runner_mod.RunTask("ok", good, str(tmp_path / "ok")),
        runner_mod.RunTask("bad", {**good, "train": {"epochs": 0}}, str(tmp_path / "bad")),
    ]
    results = {r.key: r for r in runner_mod.run_trials(tasks, workers=0)}
    assert results["ok"].status == "completed" and results["bad"].status == "failed"
    assert "train.epochs: must be between 1 and 1000000" in results["bad"].error
    again = list(runner_mod.run_trials(tasks[:1], workers=0))
    assert again[0].reused and again[0].status == "completed"


def test_trials_that_share_an_architecture_train_side_by_side(tmp_path, monkeypatch):
    """The default sweep stacks compatible trials (here all six) and gets what one run at a time gets."""
    from regbench.training import execute as group

    stacked_calls = []
    real = group.fit
    monkeypatch.setattr(
        group, "fit", lambda cfgs, *a, **k: (len(cfgs) > 1 and stacked_calls.append(len(cfgs))) or real(cfgs, *a, **k)
    )
    sweep = load_sweep(sweep_file(tmp_path, GRID6))
    stacked = run_sweep(sweep, tmp_path / "a", workers=0, say=quiet)
    alone = run_sweep(sweep, tmp_path / "b", workers=0, say=quiet, stack=1)
    assert stacked_calls == [6]
    assert [v.status for v in stacked.views] == ["completed"] * 6
    for a, b in zip(stacked.views, alone.views, strict=True):
        assert a.params == b.params and a.value == pytest.approx(b.value, abs=0.02)
        ra, rb = load_run(tmp_path / "a" / "g6" / f"g6-{a.key}-s1"), load_run(tmp_path / "b" / "g6" / f"g6-{b.key}-s1")
        assert [m["train_loss"] for m in ra.metrics] == pytest.approx([m["train_loss"] for m in rb.metrics], rel=2e-4)


def test_a_sweep_over_a_layer_parameter_stacks_and_shows_it_in_the_table(tmp_path, monkeypatch):
    """`model.layers[1].keep_prob` varies the dropout of the layer list; the trials stack (keep_prob is a
    per-member value) and the ranking table has the key as a column."""
    from regbench.training import execute as group

    stacked_calls = []
    real = group.fit
    monkeypatch.setattr(
        group, "fit", lambda cfgs, *a, **k: (len(cfgs) > 1 and stacked_calls.append(len(cfgs))) or real(cfgs, *a, **k)
    )
    body = "name: kp\nparams:\n  model.layers[1].keep_prob: [0.5, 1.0]\n"
    path = sweep_file(tmp_path, body)
    text = path.read_text(encoding="utf-8").replace("layers: [16]", "layers: [16, [dropout, {keep_prob: 0.9}]]")
    path.write_text(text, encoding="utf-8")
    report = run_sweep(load_sweep(path), tmp_path / "o", workers=0, say=quiet)
    assert stacked_calls == [2] and [v.params for v in sorted(report.views, key=lambda v: v.key)] == [
        {"model.layers[1].keep_prob": 0.5},
        {"model.layers[1].keep_prob": 1.0},
    ]
    run = load_run(tmp_path / "o" / "kp" / "kp-t000-s1")
    assert run.config["model"]["layers"][1] == ["dropout", {"keep_prob": 0.5, "scale": "train"}]
    res = cli.invoke(app, ["sweep", "--status", str(tmp_path / "o" / "kp")])
    assert res.exit_code == 0 and "model.layers[1].keep_prob" in res.output, res.output
    res = cli.invoke(
        app, ["compare", str(tmp_path / "o" / "kp"), "--where", "model.layers[1].keep_prob>0.6", "-f", "csv"]
    )
    assert res.exit_code == 0 and [line.split(",")[0] for line in res.stdout.splitlines()[1:]] == ["kp-t001-s1"], (
        res.output
    )
