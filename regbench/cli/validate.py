"""`regbench validate CONFIG`: check a config without training."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import api
from .common import SetOption, guarded

app = typer.Typer()


@app.command()
def validate(
    config: Annotated[Path, typer.Argument(help="Experiment YAML file.")],
    set_: SetOption = None,
) -> None:
    """Check CONFIG (keys, types, ranges, layer list, shapes); exit 2 with one line if it is invalid."""
    check = guarded(api.validate, config, set_ or [])
    layers = len(check.rows) - 2
    typer.echo(
        f"ok: {config} is valid ({check.config.data.name}, {check.classes} classes, {layers} layers + output,"
        f" {check.params:,} parameters)"
    )
