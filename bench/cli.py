"""How fast the command line answers, and how it scales with the number of runs and trials, measured in one run.

    python bench/cli.py [--quick] [--parts startup,compare,sweep]

startup: wall seconds of `regbench --help`, of a bare `python -c "import torch"`, and of
    `regbench train configs/digits_cnn.yaml` against the training it reports (its `train_s`): everything but
    the training, over the bare torch import. Each is the median of a few runs in fresh processes.
compare: `regbench compare DIR --format csv` over 1,000 / 3,000 / 10,000 run directories written here (the
    files of a real digits CNN run, with lr, l2, dropout and seed varied: one seed group per 3 runs).
sweep: the bookkeeping per trial of a sweep's worker (claim a trial, report its epochs, finish it) on an
    Optuna study of 100 and of 10,000 trials: the claim must cost the same at both sizes.

Prints one `RESULT` line per figure, with its target. Timings depend on the machine's load: run it on a quiet
machine, and compare the ratios rather than the seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def wall(args: list[str], cwd: Path | None = None) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    res = subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=ENV)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{res.stderr[-2000:]}")
    return time.perf_counter() - t, res


def cpu_of(args: list[str]) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall and CPU seconds (user + system) of a command: on a busy machine the CPU time is close to what a
    quiet one takes in wall time for a single-threaded command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t, res = wall(args)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return t, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), res


def median_wall(args: list[str], repeat: int, cwd: Path | None = None) -> float:
    return statistics.median(wall(args, cwd)[0] for _ in range(repeat))


# ----------------------------------------------------------------------------------------------- start-up
def startup(repeat: int) -> None:
    """Bare `import torch`, `regbench --help` and a digits CNN run, in turns (so load drifts hit all three);
    each figure the median over the repeats, the run's overhead as the median of its per-repeat ratios."""
    py = sys.executable
    torch_s, help_s, runs, ratios = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeat):
            torch_s.append(wall([py, "-c", "import torch"])[0])
            help_s.append(wall([py, "-m", "regbench", "--help"])[0])
            out = Path(tmp) / str(i)
            t, _ = wall([py, "-m", "regbench", "train", str(ROOT / "configs" / "digits_cnn.yaml"), "--out", str(out)])
            summary = json.loads(next(out.glob("*/summary.json")).read_text())
            runs.append((t, t - summary["train_s"]))
            ratios.append((t - summary["train_s"]) / torch_s[-1])
    med = statistics.median
    print(f"RESULT startup: import torch {med(torch_s):.2f} s; regbench --help {med(help_s):.2f} s (target < 1 s)")
    t, rest = med(r[0] for r in runs), med(r[1] for r in runs)
    print(
        f"RESULT startup: regbench train digits_cnn {t:.2f} s, {rest:.2f} s of it not training = "
        f"{med(ratios):.2f}x a bare import torch (target <= 1.5x; per repeat "
        f"{' '.join(f'{r:.2f}' for r in ratios)})"
    )


# ----------------------------------------------------------------------------------------------- compare
def template_run(folder: Path) -> Path:
    """One real run of the digits CNN (2 epochs) whose files the synthetic run directories copy."""
    subprocess.run(
        [sys.executable, "-m", "regbench", "train", str(ROOT / "configs" / "digits_cnn.yaml"), "--out", str(folder)]
        + ["--set", "train.epochs=2", "--set", "train.show=0"],
        check=True,
        capture_output=True,
        env=ENV,
    )
    return next(folder.iterdir())


def write_runs(template: Path, root: Path, n: int) -> None:
    """`n` run directories under `root`: the template's files with the config's lr, l2 decay, dropout and
    seed varied (three seeds per config) and the results jittered; no weights (compare never reads them)."""
    import yaml

    config = yaml.safe_load((template / "config.yaml").read_text())
    summary = json.loads((template / "summary.json").read_text())
    metrics = (template / "metrics.jsonl").read_text()
    from regbench.rundir import config_yaml

    root.mkdir(parents=True)
    for i in range(n):
        c = json.loads(json.dumps(config))
        group = i // 3
        c["seed"] = 1 + i % 3
        c["optimizer"]["lr"] = [0.1, 0.03, 0.01, 0.003][group % 4]
        c["regularizer"]["l2_decay"] = [0.0, 1e-4, 1e-3][(group // 4) % 3]
        c["name"] = f"cfg{group // 12}"
        c["model"]["layers"].insert(-1, ["dropout", {"keep_prob": 0.5 + (group % 5) / 10}])
        s = {**summary, "seed": c["seed"], "test_acc": 0.9 + (i % 97) / 1000, "best_val_acc": 0.9 + (i % 89) / 1000}
        d = root / f"{c['name']}-{i:05d}"
        d.mkdir()
        (d / "config.yaml").write_text(config_yaml(c))
        (d / "summary.json").write_text(json.dumps(s))
        (d / "metrics.jsonl").write_text(metrics)


def compare_scale(sizes: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        template = template_run(Path(tmp) / "template")
        made = 0
        root = Path(tmp) / "runs"
        for n in sizes:
            write_runs(template, root / f"part{made}", n - made) if n > made else None
            made = n
            t, cpu, res = cpu_of([sys.executable, "-m", "regbench", "compare", str(root), "--format", "csv"])
            rows = len(res.stdout.splitlines()) - 1
            target = {1000: "", 3000: " (target < 5 s)", 10000: " (target < 15 s)"}.get(n, "")
            print(f"RESULT compare: {n:,} runs ({rows:,} rows) in {t:.2f} s, {cpu:.2f} s of CPU{target}")


# ----------------------------------------------------------------------------------------------- sweep
def sweep_scale(sizes: list[int], measured: int = 40) -> None:
    """Per trial: claim, two epochs reported, finished; on studies already holding `sizes` trials, measured
    in turns (one trial on each study, then the next) so both see the same load. SQLite's fsync is switched
    off for both: with it on, a commit's disk wait (the same at any size) hides what grows with the study."""
    from sqlalchemy import event

    from regbench.experiments.study import SweepStudy
    from regbench.experiments.sweep_spec import load_sweep

    studies, times = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            sweep = load_sweep(
                {
                    "name": f"scale{n}",
                    "method": "random",
                    "trials": n,
                    "base": {"data": {"name": "synthetic"}, "model": {"layers": [8]}},
                    "params": {"optimizer.lr": {"low": 1e-4, "high": 1.0, "log": True}},
                }
            )
            study = SweepStudy(sweep, f"sqlite:///{tmp}/study{n}.db")
            event.listen(study.storage.engine, "connect", lambda conn, _: conn.execute("PRAGMA synchronous=OFF"))
            study.storage.engine.dispose()
            t = time.perf_counter()
            study.ensure(say=lambda _line: None)
            print(f"       sweep: {n:,} trials enqueued in {time.perf_counter() - t:.1f} s")
            studies[n], times[n] = study, []
        for _ in range(measured):
            for n, study in studies.items():
                t = time.perf_counter()
                claim = study.claim()
                for epoch in (1, 2):  # what a worker's Reporter stores per epoch
                    study.storage.set_trial_intermediate_value(claim.trial_id, epoch, 0.5)
                study.finish(claim.number, claim.trial_id, "completed", value=0.6)
                times[n].append(time.perf_counter() - t)
        per = {n: statistics.median(ts) for n, ts in times.items()}
        first = per[sizes[0]]
        for n in sizes:
            print(
                f"RESULT sweep: study of {n:,} trials: {per[n] * 1000:.1f} ms of bookkeeping per trial "
                f"({per[n] / first:.2f}x the {sizes[0]:,}-trial study; target about 1x)"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats, 1,000 runs and 1,000 trials at most")
    ap.add_argument("--parts", default="startup,compare,sweep")
    args = ap.parse_args()
    parts = args.parts.split(",")
    if "startup" in parts:
        startup(2 if args.quick else 5)
    if "compare" in parts:
        compare_scale([1000] if args.quick else [1000, 3000, 10000])
    if "sweep" in parts:
        sweep_scale([100, 1000] if args.quick else [100, 10000])


if __name__ == "__main__":
    main()
