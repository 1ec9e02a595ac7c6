"""The `regbench` app: composes the command modules."""

from __future__ import annotations

from typing import Annotated

import typer

from ..api import __version__
from . import compare, data, datasets, export, report, show, suite, sweep, train, validate

app = typer.Typer(
    help="Run and compare regularization experiments written in the course book's layer notation.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion, --show-completion (bash, zsh, fish, powershell)
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
for sub in (train, validate, show, compare, report, sweep, suite, datasets, data):
    app.add_typer(sub.app)
app.add_typer(export.app, name="export")


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
    """The console script: a usage error (unknown option or command, bad option value) is one `error:`
    line and exit code 2, like every other bad input."""
    import sys

    try:  # typer ≥ 0.20 vendors click as typer._click; older versions depend on click
        from typer._click.exceptions import NoArgsIsHelpError, UsageError
    except ImportError:  # pragma: no cover - depends on the installed typer
        from click.exceptions import NoArgsIsHelpError, UsageError

    from .. import api

    api.install_signal_handlers()  # again for an old `regbench.cli.main:main` script (cli.entry does it first)
    try:
        code = app(prog_name="regbench", standalone_mode=False)  # completion scripts are for `regbench`
    except NoArgsIsHelpError:  # `regbench` alone, or a group without its command: the help was printed
        code = 0
    except UsageError as e:
        cmd = e.ctx.command_path if e.ctx is not None else "regbench"
        typer.echo(f"error: {' '.join(e.format_message().split())} (see '{cmd} --help')", err=True)
        code = 2
    except (typer.Abort, KeyboardInterrupt):  # Ctrl-C or SIGTERM outside a run
        with api.shielded():
            typer.echo("error: interrupted", err=True)
        code = api.interrupt_exit_code()
    api.ignore_signals()  # a late Ctrl-C while Python shuts down must not turn the exit code into −2
    sys.exit(code if isinstance(code, int) else 0)
