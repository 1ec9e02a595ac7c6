"""The `regbench` app: composes the command modules."""

from __future__ import annotations

from typing import Annotated

import typer

from .. import __version__
from . import compare, data, datasets, report, show, suite, sweep, train, validate

app = typer.Typer(
    help="Run and compare regularization experiments written in the course book's layer notation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
for sub in (train, validate, show, compare, report, sweep, suite, datasets, data):
    app.add_typer(sub.app)


def version(value: bool) -> None:
    if value:
        typer.echo(f"regbench {__version__}")
        raise typer.Exit()


@app.callback()
def callback(
    _version: Annotated[
        bool, typer.Option("--version", callback=version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """regbench: YAML experiment → book-style layer list → torch model → run directory."""


def main() -> None:
    app()
