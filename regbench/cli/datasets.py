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
    from rich.console import Console
    from rich.markup import escape
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    rows = api.datasets(root)
    console = Console()
    if console.is_terminal and console.width < WIDE:  # a table of six columns would fold every cell
        console.print(f"[italic]data sets (data.root = {escape(str(root))})[/]")
        name_w = max(len(r["name"]) for r in rows)
        for r in rows:
            shape = book_shape(r["shape"]) if r["shape"] else "input from the files"
            classes = r["classes"] if r["classes"] == "from the files" else f"{r['classes']} classes"
            console.print(
                f"[bold]{r['name']:<{name_w}}[/]  {shape} · {escape(classes)} · {_present(r['present'])}",
                highlight=False,
            )
            lines = [r["doc"]] + ([f"files: {r['files']}"] if r["present"] != "built in" else [])
            for line in lines:  # indented under the name, wrapped at the terminal's edge
                console.print(Padding(Text(line, style="dim"), (0, 0, 0, name_w + 2)))
        return
    table = Table(title=f"data sets (data.root = {root})")
    for col in ("name", "input", "classes", "files expected at", "present", "what"):
        table.add_column(col, overflow="fold")
    for r in rows:
        shape = book_shape(r["shape"]) if r["shape"] else "from the files"
        table.add_row(r["name"], shape, r["classes"], r["files"], _present(r["present"]), r["doc"])
    print_table(table)


WIDE = 140  # terminal columns below which the data sets are listed one block each instead of as a table


def _present(present: str) -> str:
    colour = {"yes": "green", "no": "red"}.get(present, "")
    return f"[{colour}]{present}[/]" if colour else present
