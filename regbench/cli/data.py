"""`regbench data fetch NAME [--root DIR]`: download a data set's files into the data folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import api
from .common import guarded

app = typer.Typer()
data_app = typer.Typer(help="Get data set files.", no_args_is_help=True)
app.add_typer(data_app, name="data")

RootOption = Annotated[Path, typer.Option("--root", help="Data folder (the configs' data.root).")]


@data_app.command()
def fetch(
    name: Annotated[str, typer.Argument(help="Data set: flowers, mnist, fashion_mnist, cifar10, cifar100.")],
    root: RootOption = Path("data"),
) -> None:
    """Download NAME into ROOT: checksum checked, extracted safely, nothing half-written on failure."""
    where = guarded(api.fetch, name, root, starting=lambda: typer.echo(f"{name}: downloading into {root} ..."))
    typer.echo(f"{name}: ready in {where}")
