"""`regbench validate CONFIG`: check a config without training."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..resolve import check_config, load_config
from .common import SetOption, guarded

app = typer.Typer()


@app.command()
def validate(
    config: Annotated[Path, typer.Argument(help="Experiment YAML file.")],
    set_: SetOption = None,
) -> None:
    """Check CONFIG (keys, types, ranges, layer list, shapes); exit 2 with one line if it is invalid."""
    cfg = guarded(load_config, config, set_ or [])
    info, rows = guarded(check_config, cfg)
    params = sum(r.weights + r.other for r in rows)
    classes = "+".join(str(len(h.classes)) for h in info.heads)
    typer.echo(
        f"ok: {config} is valid ({cfg.data.name}, {classes} classes, {len(rows) - 2} layers + output, {params:,} parameters)"
    )
