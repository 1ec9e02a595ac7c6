"""`regbench export`: run directories into the tools users already have.

- `csv`: one long table, a row per run and epoch, with the config keys that differ between the runs as
  columns (one `pandas.read_csv` away from any analysis).
- `tensorboard`: event files TensorBoard (and W&B's / Aim's TensorBoard importers) read: per-epoch scalars
  under the metrics.jsonl names, per-step losses where steps.jsonl has them, and HParams sessions whose
  group is the seed group, so a config's seeds aggregate as one trial. Needs `regbench[tensorboard]`.
- `mlflow`: one MLflow run per run directory: params (the flattened config), per-epoch metrics with
  `step=epoch`, tags for seed group, status and seed, and the run directory's files as artifacts
  (checkpoint.pt, the resume state, left out). A run already exported (same path) is skipped. Needs
  `regbench[mlflow]`.

The runs are chosen as `compare` chooses them (folders searched, `--where`, smoke rehearsals left out).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import RegbenchError, RunDirError
from ..rundir import Run
from .compare import compare
from .diff import flat_config
from .render import csv_text
from .selection import read_steps

SKIP_ARTIFACTS = ("checkpoint.pt",)  # the resume state: large, and not a result


class ExportError(RegbenchError):
    """An export that cannot run: its optional package is missing, or the target refuses."""


@dataclass
class ExportResult:
    """What an export wrote: where, how many runs, and the runs skipped (with why)."""

    target: str
    runs: int
    rows: int = 0  # csv rows; tensorboard/mlflow: metric points
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Item:
    group: str  # the seed group's row label (a run alone: its own label)
    run: Run
    config: dict[str, Any]  # the flattened resolved config


def gather(paths: Sequence[str | Path], where: Sequence[str] = (), smoke: bool = False) -> tuple[list[Item], list[str]]:
    """The runs under `paths` as compare selects and groups them."""
    comp = compare(paths, where=where, smoke=smoke, columns=["name"])
    items = [Item(row.label, run, flat_config(run.config)) for row in comp.rows for run in row.runs]
    return items, comp.warnings


def differing_keys(items: Sequence[Item], skip: Sequence[str] = ("name", "seed")) -> list[str]:
    """Config keys whose values are not the same in every run (in config order)."""
    keys = list(dict.fromkeys(k for it in items for k in it.config))
    return [
        k
        for k in keys
        if k not in skip and len({json.dumps(it.config.get(k), sort_keys=True, default=str) for it in items}) > 1
    ]


def scalars(row: dict[str, Any]) -> dict[str, float]:
    """A metrics row's numbers: a per-head list gives `key` (first head) and `key[2]`, `key[3]`…"""
    out: dict[str, float] = {}
    for k, v in row.items():
        if k == "epoch":
            continue
        if isinstance(v, list):
            for i, x in enumerate(v):
                if isinstance(x, (int, float)) and not isinstance(x, bool):
                    out[k if i == 0 else f"{k}[{i + 1}]"] = float(x)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = float(v)
    return out


def _cell(v: Any) -> Any:
    return json.dumps(v, default=str) if isinstance(v, (dict, list)) else v


# ----------------------------------------------------------------------------------------------- csv
def export_csv(
    paths: Sequence[str | Path], out: str | Path, *, where: Sequence[str] = (), smoke: bool = False
) -> ExportResult:
    """Write one CSV row per run and epoch: run, path, group, name, seed, status, the differing config keys,
    then the epoch and its metrics (per-head values as `key[2]`…)."""
    items, warnings = gather(paths, where, smoke)
    keys = differing_keys(items)
    records = []
    for it in items:
        base = {
            "run": it.run.name,
            "path": str(it.run.path),
            "group": it.group,
            "name": it.config.get("name"),
            "seed": it.config.get("seed"),
            "status": it.run.status,
        }
        base.update({k: _cell(it.config.get(k)) for k in keys})
        for row in it.run.metrics:
            records.append({**base, "epoch": row.get("epoch"), **scalars(row)})
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(csv_text(records, ["run", "path", "group", "name", "seed", "status", *keys, "epoch"]))
    except OSError as e:
        raise RunDirError(f"{out}: cannot write the CSV ({e.strerror or e})") from None
    return ExportResult(str(out), len(items), len(records), warnings=warnings)


# ----------------------------------------------------------------------------------------------- tensorboard
def _need(module: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExportError(f"export {extra} needs the {extra} package: pip install 'regbench[{extra}]'") from None


def _hparam_value(v: Any) -> bool | float | str:
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    return v if isinstance(v, str) else json.dumps(v, default=str)


def started(run: Run) -> float:
    """The run's start as a Unix time (summary `started_at`), else its summary file's time."""
    from datetime import datetime

    text = run.summary.get("started_at")
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z").timestamp() if text else run.path.stat().st_mtime
    except (TypeError, ValueError, OSError):
        return time.time()


def safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_") or "run"


def export_tensorboard(
    paths: Sequence[str | Path], out: str | Path, *, where: Sequence[str] = (), smoke: bool = False
) -> ExportResult:
    """Write TensorBoard event files under `out/<group>/<run>/`: per-epoch scalars (step = epoch) named as
    in metrics.jsonl, `step/loss` per logged step, and an HParams session per run whose group is its seed
    group (the differing config keys and the seed as hyperparameters; final metrics as the session's)."""
    _need("tensorboard", "tensorboard")
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import summary_v2 as hp
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    items, warnings = gather(paths, where, smoke)
    keys = differing_keys(items, skip=("seed",)) or ["name"]
    out = Path(out)
    points, tags = 0, set()
    try:
        for it in items:
            folder = out / safe(it.group) / safe(it.run.name)
            writer = EventFileWriter(str(folder))
            t0 = started(it.run)

            def write(summary, step: int, wall: float, writer=writer) -> None:
                writer.add_event(Event(wall_time=wall, step=step, summary=summary))

            params = {k: _hparam_value(it.config.get(k)) for k in keys}
            params["seed"] = float(it.config.get("seed", 0))
            write(hp.hparams_pb(params, trial_id=it.group, start_time_secs=int(t0)), 0, t0)
            for row in it.run.metrics:
                wall = t0 + float(row.get("total_s") or 0.0)
                values = [Summary.Value(tag=k, simple_value=v) for k, v in scalars(row).items()]
                tags.update(v.tag for v in values)
                points += len(values)
                write(Summary(value=values), int(row.get("epoch", 0)), wall)
            for row in read_steps(it.run):
                loss = row.get("loss")
                if isinstance(row.get("step"), int) and isinstance(loss, (int, float)):
                    write(Summary(value=[Summary.Value(tag="step/loss", simple_value=float(loss))]), row["step"], t0)
                    points += 1
            writer.flush()
            writer.close()
        # the experiment: which hyperparameters and metrics the HParams dashboard lists
        root = EventFileWriter(str(out))
        hparams = [hp.HParam(k) for k in [*keys, "seed"]]
        metrics = [hp.Metric(t) for t in sorted(tags)]
        root.add_event(Event(wall_time=time.time(), summary=hp.hparams_config_pb(hparams=hparams, metrics=metrics)))
        root.close()
    except OSError as e:
        raise RunDirError(f"{out}: cannot write the event files ({e.strerror or e})") from None
    return ExportResult(str(out), len(items), points, warnings=warnings)


# ----------------------------------------------------------------------------------------------- mlflow
MLFLOW_STATUS = {"completed": "FINISHED", "running": "KILLED", "interrupted": "KILLED", "pruned": "KILLED"}


def mlflow_key(key: str) -> str:
    """MLflow names allow no brackets: `model.layers[2].keep_prob` → `model.layers.2.keep_prob`."""
    return re.sub(r"\[(\d+)\]", r".\1", key)


def artifact_location(tracking_uri: str) -> str | None:
    """For a local SQLite store, artifacts go to `mlartifacts/` beside the database (MLflow's own default is
    `./mlruns` in the current directory); a server decides for itself (None)."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        return (db.resolve().parent / "mlartifacts").as_uri()
    return None


def export_mlflow(
    paths: Sequence[str | Path],
    tracking_uri: str,
    *,
    experiment: str = "regbench",
    where: Sequence[str] = (),
    smoke: bool = False,
    artifacts: bool = True,
) -> ExportResult:
    """Log every run as an MLflow run in `experiment` at `tracking_uri` (e.g. `sqlite:///mlflow.db` or an
    MLflow server's URL): params (the flattened config), per-epoch metrics with `step=epoch` (per-head values
    as `key[2]`…), tags `regbench.group`, `regbench.status`, `regbench.seed`, `regbench.path`, and the run
    directory's files as artifacts. Runs exported before (same `regbench.path`) are skipped."""
    _need("mlflow", "mlflow")
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    items, warnings = gather(paths, where, smoke)
    try:
        client = MlflowClient(tracking_uri=tracking_uri)
        exp = client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp else client.create_experiment(experiment, artifact_location(tracking_uri))
    except MlflowException as e:
        raise ExportError(f"--tracking-uri {tracking_uri}: {str(e).splitlines()[0]}") from None
    result = ExportResult(tracking_uri, 0, warnings=warnings)
    try:
        _log_runs(client, exp_id, experiment, items, artifacts, result)
    except MlflowException as e:  # the store refused something: say what, after the runs already logged
        raise ExportError(f"--tracking-uri {tracking_uri}: {str(e).splitlines()[0]}") from None
    return result


def _log_runs(client, exp_id: str, experiment: str, items: list[Item], artifacts: bool, result: ExportResult) -> None:
    from mlflow.entities import Metric, Param, RunTag

    for it in items:
        path = str(it.run.path.resolve())
        found = client.search_runs([exp_id], filter_string=f"tags.`regbench.path` = '{path}'", max_results=1)
        if found:
            result.skipped.append(f"{it.run.name}: already in {experiment} (run {found[0].info.run_id})")
            continue
        t0 = int(started(it.run) * 1000)
        tags = {
            "regbench.group": it.group,
            "regbench.status": it.run.status,
            "regbench.seed": str(it.config.get("seed")),
            "regbench.path": path,
            "regbench.name": str(it.config.get("name")),
        }
        if it.run.summary.get("smoke"):
            tags["regbench.smoke"] = "true"
        mrun = client.create_run(exp_id, start_time=t0, tags=tags, run_name=it.run.name)
        rid = mrun.info.run_id
        params = [Param(mlflow_key(k), str(_cell(v))[:6000]) for k, v in it.config.items()]
        metrics = [
            Metric(mlflow_key(k), v, t0 + int(1000 * float(row.get("total_s") or 0.0)), int(row.get("epoch", 0)))
            for row in it.run.metrics
            for k, v in scalars(row).items()
        ]
        for i in range(0, len(params), 100):
            client.log_batch(rid, params=params[i : i + 100])
        for i in range(0, len(metrics), 1000):
            client.log_batch(rid, metrics=metrics[i : i + 1000])
        client.log_batch(rid, tags=[RunTag("mlflow.note.content", f"regbench run {it.run.path}")])
        if artifacts:
            for f in sorted(it.run.path.iterdir()):
                if f.is_file() and f.name not in SKIP_ARTIFACTS:
                    client.log_artifact(rid, str(f))
        end = t0 + int(1000 * float(it.run.summary.get("train_s") or 0.0))
        client.set_terminated(rid, status=MLFLOW_STATUS.get(it.run.status, "FAILED"), end_time=end)
        result.runs += 1
        result.rows += len(metrics)
