"""`regbench sweep SWEEP.yaml` (or `--status SWEEP_DIR`): grid, random and TPE search over config keys."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import api
from .common import fail, guarded, interrupt_code, print_table
from .progress import progress_bar

app = typer.Typer()


@app.command()
def sweep(
    file: Annotated[
        Path | None, typer.Argument(help="Sweep YAML file (base:, params:, method:, trials:, ...).")
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=0,
            help="Trials trained at once, in worker processes sharing the CPU cores or the GPU (0: in this process).",
        ),
    ] = 1,
    out: Annotated[Path, typer.Option("--out", "-o", help="Parent folder of the sweep's folder.")] = Path("sweeps"),
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            metavar="URL",
            help="The Optuna study's database (any SQLAlchemy URL, e.g. postgresql://user:pw@host/db): every "
            "process running the same sweep with it, on any machine, shares the trials. "
            "Default: sqlite in the sweep folder.",
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the trials that would run; train nothing.")] = False,
    status: Annotated[
        Path | None,
        typer.Option("--status", metavar="SWEEP_DIR", help="Show a sweep's ranking and state; train nothing."),
    ] = None,
    top: Annotated[int, typer.Option("--top", min=1, help="Trials in the ranked list (the homework shows 20).")] = 20,
    table: Annotated[int, typer.Option("--table", min=0, help="Best trials in the compare table (0: none).")] = 5,
    plot: Annotated[
        Path | None, typer.Option("--plot", metavar="FILE.png", help="Save the learning curves of the table's trials.")
    ] = None,
    stack: Annotated[
        int,
        typer.Option(
            "--stack",
            min=1,
            help="Trials that share an architecture train side by side, up to K runs per stacked model "
            "(memory bounds it too).",
        ),
    ] = api.SWEEP_STACK,
    no_stack: Annotated[bool, typer.Option("--no-stack", help="Train every run on its own.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No line per finished trial.")] = False,
) -> None:
    """Train every trial of a sweep as a run directory under OUT/<name>/, then print the ranked list in the
    book's format and the best trials as a compare table. Run it again to continue an interrupted sweep."""
    if (file is None) == (status is None):
        raise fail("give a SWEEP file to run, or --status SWEEP_DIR to show one (not both)")
    if status is not None:
        if dry_run:
            raise fail("--dry-run lists a sweep file's trials; --status shows a sweep folder")
        report = guarded(api.sweep_status, status, storage)
        for note in report.notes:
            typer.echo(f"note: {note}", err=True)
        show(report, top, table, plot, status_view=True)
        return
    spec = guarded(api.load_sweep, file)
    if dry_run:
        for line in guarded(api.sweep_plan, spec, out):
            typer.echo(line)
        return
    say = (lambda _line: None) if quiet else typer.echo
    try:
        stack = 1 if no_stack else stack
        with progress_bar("trials", plain=not quiet) as progress:
            report = guarded(
                api.sweep, spec, out, workers=workers, storage=storage, say=say, stack=stack, progress=progress
            )
    except KeyboardInterrupt:  # before any trial started (while opening the study)
        raise fail("interrupted; nothing was started", interrupt_code()) from None
    show(report, top, table, plot)


def show(report: api.SweepReport, top: int, table: int, plot: Path | None, status_view: bool = False) -> None:
    """The ranked list, the compare table of the best trials, the counts and where the files are."""
    typer.echo("")
    for line in report.ranking_lines(top):
        typer.echo(line)
    if not report.ranked():
        typer.echo("(no trial has completed yet)")
    k = table if table > 0 else 5 if plot else 0  # --plot with --table 0: the curves of the best 5
    comp = guarded(report.compare, k, plot) if k > 0 and report.ranked() else None
    if comp is not None and table > 0:
        typer.echo("")
        print_table(comp)
    if comp is not None and plot:
        typer.echo(f"Plot saved in {plot}", err=True)
    if comp is None and k > 0 and report.ranked():
        typer.echo("(the best trials ran on other machines: no local run directories to tabulate)")
    took = f" in {format_seconds(report.seconds)}" if report.seconds is not None and not status_view else ""
    typer.echo(f"\n{report.count_line()}{took}; sweep saved in {report.path}")


def format_seconds(s: float) -> str:
    m, sec = divmod(int(round(s)), 60)
    return f"{m} min {sec} s" if m else f"{s:.1f} s"
