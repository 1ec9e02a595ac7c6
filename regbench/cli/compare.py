"""`regbench compare RUN_OR_DIR...`: a side-by-side table of run directories, seed groups, a baseline verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import api
from .common import Format, guarded, print_table

app = typer.Typer()


Paths = Annotated[
    list[Path],
    typer.Argument(help="Run directories, or folders searched for them (e.g. runs/* or runs).", show_default=False),
]
WhereOption = Annotated[
    list[str] | None,
    typer.Option(
        "--where",
        "-w",
        metavar="EXPR",
        help="Keep runs where KEY OP VALUE holds (OP: == != > >= < <=), e.g. 'regularizer.l2_decay>0' "
        "or 'data.name==digits and test_acc>=0.9'; repeatable.",
    ),
]
SortOption = Annotated[
    str | None,
    typer.Option("--sort", metavar="COLUMN", help="Sort rows by a column (--sort=-COLUMN or --desc: descending)."),
]
DescOption = Annotated[bool, typer.Option("--desc", help="Sort descending.")]
ColumnsOption = Annotated[
    str | None,
    typer.Option(
        "--columns",
        "-c",
        metavar="A,B,C",
        help=f"Columns to show: {', '.join(api.COMPARE_COLUMNS)}, or any config key or summary field "
        "(e.g. optimizer.lr, seed, test_loss).",
    ),
]
BaselineOption = Annotated[
    str | None,
    typer.Option(
        "--baseline",
        "-b",
        metavar="RUN_OR_GROUP",
        help="A row label, run directory (path or name) or config name: adds Δ, its CI, a test (paired/Welch/exact/McNemar), p, Holm's p and a verdict per row.",
    ),
]
MetricOption = Annotated[str, typer.Option("--metric", help="Column the baseline verdict tests (first head).")]


@app.command()
def compare(
    paths: Paths,
    where: WhereOption = None,
    sort: SortOption = None,
    desc: DescOption = False,
    columns: ColumnsOption = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
    baseline: BaselineOption = None,
    metric: MetricOption = "test_acc",
    no_group: Annotated[
        bool, typer.Option("--no-group", help="One row per run, even for runs that differ only by seed.")
    ] = False,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", metavar="FILE.png", help="Also save learning curves per row (mean ± std bands)."),
    ] = None,
) -> None:
    """Compare run directories side by side; runs that differ only by seed form one row (mean ± std)."""
    comp = guarded(
        api.compare,
        paths,
        where=where or [],
        sort=sort,
        desc=desc,
        columns=columns,
        baseline=baseline,
        metric=metric,
        group=not no_group,
        plot=plot,
    )
    for warning in comp.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if fmt is Format.table:
        print_table(comp)
    else:
        typer.echo(comp.render(fmt.value), nl=False)
    if plot:
        typer.echo(f"Plot saved in {plot}", err=True)
