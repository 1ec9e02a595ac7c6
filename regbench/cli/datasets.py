"""`regbench datasets [--root DIR]`: every data set, its input shape and classes, and whether its files are there."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import api
from .common import print_table
from .show import book_shape

app = typer.Typer()


@app.command()
def datasets(
    root: Annotated[Path, typer.Option("--root", help="Data folder (the configs' data.root).")] = Path("data"),
) -> None:
    """List the data sets: input shape (H×W×C), classes per head, where the files go, and if they are there."""
    from rich.table import Table

    table = Table(title=f"data sets (data.root = {root})")
    for col in ("name", "input", "classes", "files expected at", "present", "what"):
        table.add_column(col, overflow="fold")
    for r in api.datasets(root):
        colour = {"yes": "green", "no": "red"}.get(r["present"], "")
        present = f"[{colour}]{r['present']}[/]" if colour else r["present"]
        shape = book_shape(r["shape"]) if r["shape"] else "from the files"
        table.add_row(r["name"], shape, r["classes"], r["files"], present, r["doc"])
    print_table(table)
