"""`regbench report RUN_OR_DIR... -o DIR`: report.md and a self-contained report.html with table and figures."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import api
from .common import guarded
from .compare import (
    BaselineOption,
    ColumnsOption,
    DescOption,
    MetricOption,
    Paths,
    SmokeOption,
    SortOption,
    WhereOption,
)

app = typer.Typer()


@app.command()
def report(
    paths: Paths,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for report.md, report.html and the PNGs.")] = Path(
        "report"
    ),
    where: WhereOption = None,
    sort: SortOption = None,
    desc: DescOption = False,
    columns: ColumnsOption = None,
    baseline: BaselineOption = None,
    metric: MetricOption = "test_acc",
    samples: Annotated[int, typer.Option("--samples", min=0, max=32, help="Test images shown per row (0: none).")] = 8,
    lang: Annotated[
        str | None, typer.Option("--lang", help="ko or en (default: the language the runs were trained in).")
    ] = None,
    figures: Annotated[
        str, typer.Option("--figures", metavar="png|svg", help="Figure format (svg: sharp in LaTeX and Word).")
    ] = "png",
    smoke: SmokeOption = False,
) -> None:
    """Write DIR/report.md and DIR/report.html: table, learning curves, histograms, samples, confusion matrix."""
    res = guarded(
        api.report,
        paths,
        out,
        where=where or [],
        baseline=baseline,
        metric=metric,
        sort=sort,
        desc=desc,
        columns=columns,
        samples=samples,
        lang=lang,
        figures=figures,
        smoke=smoke,
    )
    for warning in res.warnings:
        typer.echo(f"warning: {warning}", err=True)
    for note in res.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(f"Report written to {res.md} and {res.html} ({len(res.figures)} figures)")
