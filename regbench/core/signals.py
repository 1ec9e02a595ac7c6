"""Ctrl-C and SIGTERM, any number of them: the first stops the work (KeyboardInterrupt, or `Terminated` for
SIGTERM), every later one is ignored, so the files a stopping run writes are always written and the command
ends with one line and exit 130 (SIGINT) or 143 (SIGTERM), never a traceback.

`install()` is called first thing by the console script (before the slow imports: a Ctrl-C while they run
is the same one line). `shielded()` guards a block that must finish (a run marking itself interrupted)
against further signals also where no handler was installed (regbench used as a library).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM: stops a run like Ctrl-C (status `interrupted`), and the command exits 143."""


_first: list[int] = []  # the signal that stopped this process, once one did


def stopped_by() -> int | None:
    """The first SIGINT/SIGTERM this process received through `install`'s handler, or None."""
    return _first[0] if _first else None


def exit_code() -> int:
    """130 after Ctrl-C, 143 after SIGTERM (128 + the signal number, as shells report it)."""
    return 128 + (stopped_by() or signal.SIGINT)


def _handler(signum: int, frame: Any) -> None:
    if _first:
        return  # already stopping: the run's files are being written
    _first.append(signum)
    raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt


def install() -> None:
    """Handle SIGINT and SIGTERM in this (main) thread: the first raises, later ones are ignored."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _handler)
        signal.signal(signal.SIGTERM, _handler)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """SIGINT/SIGTERM are ignored inside the block (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            saved[sig] = signal.signal(sig, signal.SIG_IGN)
        except (ValueError, OSError):
            pass
    try:
        yield
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)


def ignore() -> None:
    """Ignore SIGINT/SIGTERM from now on: called as the command exits. Python restores the default handlers
    while it shuts down, so a Ctrl-C still arriving then would end the process with −2 instead of 130."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
