"""`regbench suite NAME|FILE` (or `--list`): train a named group of configs and print its compare table."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..analysis.compare import csv_text
from ..experiments import suite as lib
from .common import Format, LangOption, SetOption, check_lang, fail, guarded
from .train import parse_seeds

app = typer.Typer()


@app.command()
def suite(
    target: Annotated[
        str | None,
        typer.Argument(
            metavar="NAME|FILE",
            help="A group of configs/suites.yaml (see --list), a YAML with a configs: list, or a suites file.",
        ),
    ] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the groups and whether their data are here.")] = False,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            metavar="SUITES.yaml",
            help="Suites file for NAME and --list (default: configs/suites.yaml).",
        ),
    ] = None,
    seeds: Annotated[
        str | None,
        typer.Option(
            "--seeds",
            metavar="K|A,B,C",
            help="Train every config K times (its seed and the K-1 after it) or with these seeds; the table "
            "shows each config's seeds as one row, mean ± std.",
        ),
    ] = None,
    set_: SetOption = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Parent folder: the runs go to OUT/<group>/ (OUT/<group>-smoke/).")
    ] = Path("runs/suites"),
    smoke: Annotated[
        bool,
        typer.Option(
            "--smoke",
            help="One tiny epoch per config on a few samples; absent data sets are replaced by synthetic "
            "stand-ins of the same input shape and heads (what CI runs).",
        ),
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would train; train nothing.")] = False,
    stack: Annotated[
        int | None,
        typer.Option(
            "--stack", min=1, help="At most K runs side by side in one stacked model (default: as memory allows)."
        ),
    ] = None,
    no_stack: Annotated[bool, typer.Option("--no-stack", help="Train every run on its own.")] = False,
    fmt: Annotated[Format, typer.Option("--format", help="Format of the compare table.")] = Format.table,
    lang: LangOption = "ko",
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the compare tables and where the runs are.")
    ] = False,
) -> None:
    """Train every config of a group (over --seeds), side by side where they stack, and end with the group's
    compare table; a group of groups runs each in turn. `regbench suite --list` shows the groups."""
    check_lang(lang)
    if list_:
        if target is not None:
            raise fail("--list shows every group; give no NAME with it")
        show_list(guarded(lib.list_groups, file))
        return
    if target is None:
        raise fail("give a group NAME or a FILE (`regbench suite --list` shows the groups)")
    leaves = guarded(lib.find_suites, target, file)
    seed_spec = parse_seeds(seeds)
    kw = {"seeds": seed_spec, "overrides": set_ or [], "smoke": smoke, "check_data": not dry_run}
    plans = [guarded(lib.plan_suite, s, **kw) for s in leaves]
    if dry_run:
        for plan in plans:
            show_plan(plan, out, err=fmt in (Format.csv, Format.json))
        return
    # csv and json are for programs: stdout holds the table(s) alone, the runs' printout goes to stderr
    machine = fmt in (Format.csv, Format.json)
    say = (lambda text: typer.echo(text, err=True)) if machine else typer.echo
    status, results = 0, []
    try:
        for plan in plans:
            with contextlib.redirect_stdout(sys.stderr) if machine else contextlib.nullcontext():
                result = lib.run_suite(plan, out, lang=lang, quiet=quiet, stack=1 if no_stack else stack, say=say)
            results.append(result)
            show_result(result, fmt, quiet)
            if result.problems:
                status = max(status, 3 if result.diverged_only else 1)
    except KeyboardInterrupt:
        raise fail("interrupted; the runs finished so far are kept (their folders list them)", 130) from None
    if machine:
        typer.echo(machine_tables(results, fmt), nl=False)
    if status:
        raise typer.Exit(status)


def machine_tables(results: list[lib.SuiteResult], fmt: Format) -> str:
    """One document for all groups: a group's compare table as `regbench compare` writes it; for several
    groups, json maps each group to its table and csv adds a leading `suite` column."""
    done = [(r.suite.name, r.comparison) for r in results if r.comparison is not None]
    if len(done) == 1:
        return done[0][1].render(fmt.value)
    if fmt is Format.json:
        return json.dumps({name: json.loads(comp.to_json()) for name, comp in done}, ensure_ascii=False) + "\n"
    return csv_text([{"suite": name, **rec} for name, comp in done for rec in comp.flat_records()])


def show_list(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="suites (regbench suite NAME)")
    for col in ("name", "configs", "data", "what"):
        table.add_column(col, overflow="fold")
    for r in rows:
        what = f"{r['configs']} configs" + (f" in {', '.join(r['groups'])}" if r["groups"] else "")
        data = ", ".join(f"{name} [green]✓[/]" if ok else f"{name} [red]absent[/]" for name, ok in r["data"].items())
        table.add_row(r["name"], what, data, r["doc"])
    console = Console()
    if not console.is_terminal:
        console.width = 1000
    console.print(table)
    typer.echo("absent: `regbench data fetch NAME` (or see `regbench datasets`), or --smoke for a synthetic stand-in")


def show_plan(plan: lib.Plan, out: Path, err: bool = False) -> None:
    """The dry run's plan (on stderr with --format csv|json: stdout is for the tables)."""
    say = lambda text: typer.echo(text, err=err)  # noqa: E731
    say(f"Suite {plan.suite.name}: {plan.runs} runs into {lib.folder_of(plan.suite, out, plan.smoke)}")
    for i, cfgs in enumerate(plan.passes, 1):
        say("  " + lib.pass_line(plan.suite, i, len(plan.passes), cfgs, len(cfgs) > 1).split(": ", 1)[1])
    for name in plan.absent:
        say(f"  note: data set '{name}' is not here (`regbench datasets` shows where it goes; or --smoke)")


def show_result(result: lib.SuiteResult, fmt: Format, quiet: bool) -> None:
    for problem in result.problems:
        typer.echo(f"warning: {problem}", err=True)
    comp = result.comparison
    machine = fmt in (Format.csv, Format.json)
    if comp is not None:
        for note in [*comp.warnings, *result.notes]:
            typer.echo(f"note: {note}", err=True)
    if comp is not None and not machine:  # csv and json are written once, after every group
        typer.echo("")
        if fmt is Format.table:
            from rich.console import Console

            console = Console()
            if console.is_terminal:
                console.print(comp.to_rich(console.width))
            else:
                console.width = 1000
                console.print(comp.to_rich())
        else:
            typer.echo(comp.render(fmt.value), nl=False)
    n = len(result.runs)
    line = f"Suite {result.suite.name}: {n} runs in {result.seconds:.0f} s; saved in {result.folder}"
    typer.echo(line, err=machine)
