"""`regbench compare RUN_OR_DIR...`: a side-by-side table of run directories, seed groups, a baseline verdict."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from .. import api
from .common import guarded, print_table

app = typer.Typer()


class CompareFormat(str, Enum):
    """`compare --format`: the shared formats plus LaTeX."""

    table = "table"
    csv = "csv"
    markdown = "markdown"
    json = "json"
    latex = "latex"


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
SmokeOption = Annotated[
    bool, typer.Option("--smoke", help="Also show rehearsal runs made by `suite --smoke` (left out by default).")
]


@app.command()
def compare(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Run directories, or folders searched for them (e.g. runs/* or runs).", show_default=False),
    ] = None,
    where: WhereOption = None,
    sort: SortOption = None,
    desc: DescOption = False,
    columns: ColumnsOption = None,
    fmt: Annotated[
        CompareFormat, typer.Option("--format", "-f", help="Output format (latex: a booktabs tabular).")
    ] = CompareFormat.table,
    baseline: BaselineOption = None,
    metric: MetricOption = "test_acc",
    no_group: Annotated[
        bool, typer.Option("--no-group", help="One row per run, even for runs that differ only by seed.")
    ] = False,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", metavar="FILE.png", help="Also save learning curves per row (mean ± std bands)."),
    ] = None,
    diff: Annotated[
        tuple[str, str] | None,
        typer.Option(
            "--diff",
            metavar="A B",
            help="Show only the config keys that differ between A and B: run directories, or row labels, run "
            "names or config names among PATHS (a seed group is one side).",
        ),
    ] = None,
    smoke: SmokeOption = False,
) -> None:
    """Compare run directories side by side; runs that differ only by seed form one row (mean ± std)."""
    if diff:
        found = guarded(api.diff, diff[0], diff[1], paths or [], smoke=smoke)
        typer.echo(guarded(found.render, fmt.value), nl=False)
        return
    if not paths:
        raise guarded_usage()
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
        smoke=smoke,
    )
    for warning in comp.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if fmt is CompareFormat.table:
        print_table(comp)
    else:
        typer.echo(comp.render(fmt.value), nl=False)
    if plot:
        typer.echo(f"Plot saved in {plot}", err=True)


def guarded_usage() -> typer.Exit:
    typer.echo("error: give run directories or folders to compare (see 'regbench compare --help')", err=True)
    return typer.Exit(2)
