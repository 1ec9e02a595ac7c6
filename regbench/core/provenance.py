"""Where a run's code and environment came from, for summary.json: the git commit (and whether the tree had
uncommitted changes) of the repository holding the config file, and one hash of the installed package set.

The config file is named by `config_source(path)` around training (the API does it for a YAML path; with
a dict or Config the current directory's repository is used). The git state is read for every run (a
few git calls, once for the runs of one side-by-side group: an edit between two runs in one notebook shows), the package hash once per process."""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import subprocess
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

_SOURCE: contextvars.ContextVar[Path | None] = contextvars.ContextVar("regbench_config_source", default=None)


@contextlib.contextmanager
def config_source(path: str | Path | None) -> Iterator[None]:
    """Within the block, runs record the git state of the repository holding `path` (a config file)."""
    token = _SOURCE.set(Path(path).resolve() if path is not None else None)
    try:
        yield
    finally:
        _SOURCE.reset(token)


_SHARED: contextvars.ContextVar[dict[Path, dict[str, Any] | None] | None] = contextvars.ContextVar(
    "regbench_git_readings", default=None
)


@contextlib.contextmanager
def one_reading() -> Iterator[None]:
    """Within the block, the git state of a folder is read once (the runs of one side-by-side group)."""
    token = _SHARED.set({})
    try:
        yield
    finally:
        _SHARED.reset(token)


def git_state(folder: Path) -> dict[str, Any] | None:
    """`{commit, dirty, root}` of the git repository holding `folder`, or None (no git, or not a repository);
    read for every run (an edit between two runs of a notebook shows), once for a group inside `one_reading`."""
    shared = _SHARED.get()
    if shared is None:
        return _git_state(folder)
    if folder not in shared:
        shared[folder] = _git_state(folder)
    return shared[folder]


def _git_state(folder: Path) -> dict[str, Any] | None:

    def git(*args: str) -> str:
        out = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10, check=True)
        return out.stdout.strip()

    try:
        root = git("rev-parse", "--show-toplevel")
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty, "root": root}


@lru_cache(maxsize=1)
def packages_hash() -> str:
    """sha256 (hex) of the sorted `name==version` lines of every installed distribution: equal hashes mean
    the same package set."""
    from importlib.metadata import distributions

    names = sorted({f"{(d.metadata['Name'] or '?').lower()}=={d.version}" for d in distributions()})
    return hashlib.sha256("\n".join(names).encode()).hexdigest()


def provenance() -> dict[str, Any]:
    """What summary.json records under `provenance`: `git` (or None), `config` (the file, when named) and
    `packages` (the package-set hash)."""
    source = _SOURCE.get()
    folder = source.parent if source is not None else Path.cwd().resolve()
    return {"config": str(source) if source else None, "git": git_state(folder), "packages": packages_hash()}
