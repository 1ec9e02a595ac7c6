"""One overall progress bar for suites and sweeps: done of total, failures, time left.

On a terminal (stdout and stderr both) a Rich bar at the bottom, the per-trial lines printed above it; piped
or redirected, a plain `progress:` line on stderr after each finished trial or run, so stdout keeps only what
the command prints (the tables, CSV or JSON)."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator

import typer

Update = Callable[[int, int, int], None]  # (done, total, failed)


def time_left(elapsed: float, done_here: int, left: int) -> str:
    """`about 2 min 10 s left` from this call's pace; '' before the first item finished here."""
    if done_here <= 0 or left <= 0:
        return ""
    s = round(elapsed / done_here * left)
    m, sec = divmod(s, 60)
    return f"about {m} min {sec} s left" if m else f"about {sec} s left"


def progress_line(what: str, done: int, total: int, failed: int, left: str) -> str:
    """`progress: 3/20 trials done, 1 failed, about 2 min 10 s left`."""
    parts = [f"progress: {done}/{total} {what} done"]
    if failed:
        parts.append(f"{failed} failed")
    if left:
        parts.append(left)
    return ", ".join(parts)


@contextlib.contextmanager
def progress_bar(what: str, plain: bool = True) -> Iterator[Update | None]:
    """A callback for the API's `progress=`, showing `what` (trials, runs) done; None when the output is not
    a terminal and `plain` is false (--quiet)."""
    terminal = sys.stdout.isatty() and sys.stderr.isatty()
    if not terminal and not plain:
        yield None
        return
    start: dict[str, float | int] = {}

    def pace(done: int) -> tuple[float, int]:
        """Seconds since the first call and items finished since then (a continued sweep starts part done)."""
        if not start:
            start.update(t=time.monotonic(), done=done)
        return time.monotonic() - float(start["t"]), done - int(start["done"])

    if not terminal:
        last: list[int] = []

        def plain(done: int, total: int, failed: int) -> None:
            elapsed, here = pace(done)
            if last and last[-1] == done:
                return
            last.append(done)
            if done:  # the start is no news
                typer.echo(progress_line(what, done, total, failed, time_left(elapsed, here, total - done)), err=True)

        yield plain
        return

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    bar = Progress(
        TextColumn(f"[bold]{what}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]}"),
        TextColumn("{task.fields[left]}"),
        console=Console(stderr=True),
        transient=True,  # gone at the end: the summary line says the same
    )
    task = bar.add_task(what, total=None, failed="", left="")

    def rich_update(done: int, total: int, failed: int) -> None:
        elapsed, here = pace(done)
        text = f"[red]{failed} failed[/]" if failed else ""
        bar.update(task, completed=done, total=total, failed=text, left=time_left(elapsed, here, total - done))

    with bar:
        yield rich_update
