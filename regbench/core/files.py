"""File utilities every layer shares: atomic writes, JSON-lines appends, an advisory lock, a pid check."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import RunDirError


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temporary file and rename; `path` is either old or new, never partial.

    The temporary name holds the process id, so concurrent processes never share one (one process writes
    a given run directory); a plain open is 4× cheaper than mkstemp + chmod on every epoch.
    """
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise RunDirError(f"{path}: cannot write ({e.strerror or e})") from None
        raise


def append_lines(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append JSON lines in one write (readers skip a line that is not whole, as after a crash mid-write)."""
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write("".join(json.dumps(r) + "\n" for r in rows))
    except OSError as e:
        raise RunDirError(f"{path}: cannot write ({e.strerror or e})") from None


@contextlib.contextmanager
def file_lock(path: Path | None) -> Iterator[None]:
    """An exclusive advisory lock (flock) on `path` for the `with` block; None locks nothing."""
    if path is None:
        yield
        return
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def pid_alive(pid: object) -> bool | None:
    """Whether a process with this id exists on this machine: True, False, or None when `pid` is not a
    positive int (an older file without one): the caller decides what unknown means for it."""
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True
