"""`regbench show CONFIG`: the model's layers, output shapes and parameter counts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import api
from .common import SetOption, guarded

app = typer.Typer()


def book_shape(shape: tuple[int, ...]) -> str:
    """(C, H, W) → `H×W×C` as the book writes shapes; a vector → its width."""
    return f"{shape[1]}×{shape[2]}×{shape[0]}" if len(shape) == 3 else str(shape[0])


@app.command()
def show(
    config: Annotated[Path, typer.Argument(help="Experiment YAML file.")],
    set_: SetOption = None,
) -> None:
    """Print a table of CONFIG's layers with output shapes and parameter counts."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    check = guarded(api.show, config, set_ or [])
    cfg, rows = check.config, check.rows
    table = Table(title=Text(f"{cfg.name}: {cfg.data.name}, heads {check.classes}"))
    for col, just in (
        ("#", "right"),
        ("layer", "left"),
        ("output", "right"),
        ("weights", "right"),
        ("biases/other", "right"),
        ("params", "right"),
    ):
        table.add_column(col, justify=just, overflow="fold")
    for r in rows:
        counts = (f"{r.weights:,}", f"{r.other:,}", f"{r.weights + r.other:,}")
        table.add_row(r.index, Text(r.text), book_shape(r.shape), *counts)  # Text: brackets are not markup
    weights, other = check.weights, check.params - check.weights
    table.add_section()
    table.add_row("", "total", "", f"{weights:,}", f"{other:,}", f"{weights + other:,}")
    console = Console()
    console.print(table)
    console.print(f"weights and kernels (the book's parameter count): {weights:,}", highlight=False)
