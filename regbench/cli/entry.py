"""The console script's first code: Ctrl-C/SIGTERM handling is installed before the slow imports, so a signal
at any moment is one line and exit 130/143 (`api.install_signal_handlers`)."""

from __future__ import annotations

import sys


def main() -> None:
    """`regbench …`: install the signal handlers, then run the app (cli.main)."""
    from .. import api

    api.install_signal_handlers()
    try:
        from .main import main as run_app
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        api.ignore_signals()
        sys.exit(api.interrupt_exit_code())
    run_app()
