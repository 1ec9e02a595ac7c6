"""`regbench suite NAME|FILE` (or `--list`): train a named group of configs and print its compare table."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from .. import api
from .common import Format, LangOption, SetOption, check_lang, fail, guarded, interrupt_code, print_table
from .progress import progress_bar
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
    vary_split: Annotated[
        bool,
        typer.Option(
            "--vary-split",
            help="Each seed also draws its own train/val/test split (data.seed = seed), so the verdicts' p "
            "covers the split's variance too; default: one fixed split (data.seed) for every seed.",
        ),
    ] = False,
    set_: SetOption = None,
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Parent folder: the runs go to OUT/<group>/ (--smoke: OUT/smoke/<group>/)."),
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
        show_list(guarded(api.suite_list, file))
        return
    if target is None:
        raise fail("give a group NAME or a FILE (`regbench suite --list` shows the groups)")
    leaves = guarded(api.suite_groups, target, file)
    seed_spec = parse_seeds(seeds)
    kw = {"seeds": seed_spec, "overrides": set_ or [], "smoke": smoke, "check_data": not dry_run}
    kw["vary_split"] = vary_split
    plans = [guarded(api.suite_plan, s, **kw) for s in leaves]
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
                with progress_bar("runs", plain=not quiet) as progress:
                    stacking = 1 if no_stack else stack
                    result = api.suite(plan, out, lang=lang, quiet=quiet, stack=stacking, say=say, progress=progress)
            results.append(result)
            show_result(result, fmt, quiet)
            if result.problems:
                status = max(status, 3 if result.diverged_only else 1)
    except KeyboardInterrupt as e:
        stopped = [str(p) for p in getattr(e, "paths", [])]  # the runs Ctrl-C stopped (api's RunInterrupted)
        where = f"; stopped: {', '.join(stopped)} (regbench train --resume DIR continues each)" if stopped else ""
        msg = f"interrupted; the runs finished so far are kept (their folders list them){where}"
        raise fail(msg, interrupt_code()) from None
    if machine:
        typer.echo(machine_tables(results, fmt), nl=False)
    if status:
        raise typer.Exit(status)


def machine_tables(results: list[api.SuiteResult], fmt: Format) -> str:
    """One document for all groups: a group's compare table as `regbench compare` writes it; for several
    groups, json maps each group to its table and csv adds a leading `suite` column."""
    done = [(r.suite.name, r.comparison) for r in results if r.comparison is not None]
    if len(done) == 1:
        return done[0][1].render(fmt.value)
    if fmt is Format.json:
        return json.dumps({name: json.loads(comp.to_json()) for name, comp in done}, ensure_ascii=False) + "\n"
    return api.csv_text([{"suite": name, **rec} for name, comp in done for rec in comp.flat_records()])


def show_list(rows: list[dict]) -> None:
    from rich.table import Table

    table = Table(title="suites (regbench suite NAME)")
    for col in ("name", "configs", "data", "what"):
        table.add_column(col, overflow="fold")
    for r in rows:
        what = f"{r['configs']} configs" + (f" in {', '.join(r['groups'])}" if r["groups"] else "")
        data = ", ".join(f"{name} [green]✓[/]" if ok else f"{name} [red]absent[/]" for name, ok in r["data"].items())
        table.add_row(r["name"], what, data, r["doc"])
    print_table(table)
    typer.echo("absent: `regbench data fetch NAME` (or see `regbench datasets`), or --smoke for a synthetic stand-in")


def show_plan(plan: api.Plan, out: Path, err: bool = False) -> None:
    """The dry run's plan (on stderr with --format csv|json: stdout is for the tables)."""
    say = lambda text: typer.echo(text, err=err)  # noqa: E731
    for line in api.suite_plan_lines(plan, out):
        say(line)
    for name in plan.absent:
        say(f"  note: data set '{name}' is not here (`regbench datasets` shows where it goes; or --smoke)")


def show_result(result: api.SuiteResult, fmt: Format, quiet: bool) -> None:
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
            print_table(comp)
        else:
            typer.echo(comp.render(fmt.value), nl=False)
    n = len(result.runs)
    line = f"Suite {result.suite.name}: {n} runs in {result.seconds:.0f} s; saved in {result.folder}"
    typer.echo(line, err=machine)
