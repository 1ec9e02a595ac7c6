"""`regbench export csv|tensorboard|mlflow RUN_OR_DIR...`: run directories into other tools' formats."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import api
from .common import guarded
from .compare import Paths, SmokeOption, WhereOption

app = typer.Typer(help="Export runs: a long CSV, TensorBoard event files, or MLflow runs.", no_args_is_help=True)
OutDir = Annotated[Path, typer.Option("--out", "-o", help="Folder for the event files (one folder per run).")]


def done(res) -> None:
    for warning in res.warnings:
        typer.echo(f"warning: {warning}", err=True)
    for skipped in res.skipped:
        typer.echo(f"skipped: {skipped}", err=True)


@app.command("csv")
def csv(
    paths: Paths,
    out: Annotated[Path, typer.Option("--out", "-o", help="The CSV file to write.")] = Path("runs.csv"),
    where: WhereOption = None,
    smoke: SmokeOption = False,
) -> None:
    """One row per run and epoch, with the config keys that differ between the runs as columns."""
    res = guarded(api.export_csv, paths, out, where=where or [], smoke=smoke)
    done(res)
    typer.echo(f"Wrote {res.rows} rows ({res.runs} runs) to {res.target}")


@app.command("tensorboard")
def tensorboard(
    paths: Paths, out: OutDir = Path("tensorboard"), where: WhereOption = None, smoke: SmokeOption = False
) -> None:
    """Per-epoch scalars, per-step losses and HParams sessions (seeds grouped) for `tensorboard --logdir OUT`."""
    res = guarded(api.export_tensorboard, paths, out, where=where or [], smoke=smoke)
    done(res)
    typer.echo(f"Wrote {res.runs} runs ({res.rows} scalar points) to {res.target}: tensorboard --logdir {res.target}")


@app.command("mlflow")
def mlflow(
    paths: Paths,
    tracking_uri: Annotated[
        str, typer.Option("--tracking-uri", help="Where to log, e.g. sqlite:///mlflow.db or http://host:5000.")
    ] = "sqlite:///mlflow.db",
    experiment: Annotated[str, typer.Option("--experiment", help="MLflow experiment name.")] = "regbench",
    no_artifacts: Annotated[bool, typer.Option("--no-artifacts", help="Do not upload the run's files.")] = False,
    where: WhereOption = None,
    smoke: SmokeOption = False,
) -> None:
    """One MLflow run per run directory: params, per-epoch metrics (step=epoch), tags, artifacts."""
    res = guarded(
        api.export_mlflow,
        paths,
        tracking_uri,
        experiment=experiment,
        where=where or [],
        smoke=smoke,
        artifacts=not no_artifacts,
    )
    done(res)
    typer.echo(f"Logged {res.runs} runs ({res.rows} metric points) to {res.target}, experiment {experiment}")
