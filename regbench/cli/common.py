"""What every command shares: option types, the one table printer, and the one place that turns a RegbenchError
into `error: …` plus an exit code."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Annotated, Any, TypeVar

import typer

from ..api import LANGS, RegbenchError, with_source


class Format(str, Enum):
    """`--format` of the commands that print a compare table."""

    table = "table"
    csv = "csv"
    markdown = "markdown"
    json = "json"


T = TypeVar("T")

SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        metavar="KEY.PATH=VALUE",
        help="Override a config key (value parsed as YAML); repeatable.",
    ),
]
LangOption = Annotated[str, typer.Option("--lang", help="Language of the book's report lines: ko (the book's) or en.")]


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print `error: message` as one line on stderr and return the Exit to raise."""
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    return typer.Exit(code)


def interrupt_code() -> int:
    """The exit code of a command stopped by a signal: 130 for Ctrl-C, 143 for SIGTERM."""
    from ..api import interrupt_exit_code

    return interrupt_exit_code()


def guarded(fn: Callable[..., T], *args, source: object = None, **kwargs) -> T:
    """Call library code; a RegbenchError becomes its one-line message and exit code, with no traceback.
    With `source` (the config file), a message that does not name it yet starts with it."""
    try:
        return fn(*args, **kwargs)
    except RegbenchError as e:
        if source is not None:
            e = with_source(e, source)
        raise fail(str(e), e.exit_code) from None


def check_lang(lang: str) -> str:
    if lang not in LANGS:
        raise fail(f"--lang: expected ko or en, got {lang!r}")
    return lang


def print_table(table: Any) -> None:
    """Print a rich Table, or a Comparison (anything with `to_rich(width)`), on stdout. On a terminal a
    Comparison hides the optional columns that do not fit; piped or redirected output gets every column,
    nothing squeezed."""
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console.width = 1000
    if hasattr(table, "to_rich"):
        table = table.to_rich(console.width if console.is_terminal else None)
    console.print(table)
