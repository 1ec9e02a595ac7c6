"""Which runs compare reads: run directories found under the given paths, and the --where conditions they
must meet (`KEY OP VALUE`, no eval)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import RunDirError
from ..core.values import number
from ..rundir import CONFIG, STEPS, SUMMARY, Run, load_run, read_jsonl
from .columns import CompareError, KeyIndex, run_value


# ----------------------------------------------------------------------------------------------- collecting
def is_run_dir(path: Path) -> bool:
    """Whether `path` holds a run (a summary.json or a config.yaml)."""
    return (path / SUMMARY).is_file() or (path / CONFIG).is_file()


def find_run_dirs(root: Path) -> list[Path]:
    """Run directories under `root`, in sorted order; a run directory's own subfolders are not searched."""
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        here = Path(dirpath)
        if is_run_dir(here):
            found.append(here)
            dirnames[:] = []
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    return found


def collect_runs(paths: Iterable[str | Path]) -> tuple[list[Run], list[str]]:
    """Load every run directory named in `paths` or found under them.

    Returns the runs (each once, in the order found) and one warning per skipped path: a path that does not
    exist, a file or folder that is not a run directory, a run directory with missing or corrupt files.
    """
    runs: list[Run] = []
    warnings: list[str] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        key = p.resolve()
        if key in seen:
            return
        seen.add(key)
        try:
            runs.append(load_run(p))
        except RunDirError as e:
            warnings.append(f"skipped {e}")

    for raw in paths:
        p = Path(raw)
        if not p.exists():
            warnings.append(f"skipped {p}: no such file or directory")
        elif p.is_dir() and is_run_dir(p):
            add(p)
        elif not p.is_dir():
            warnings.append(f"skipped {p}: not a run directory")
        else:
            found = find_run_dirs(p)
            if not found:
                warnings.append(f"skipped {p}: not a run directory, and no run directories inside")
            for q in found:
                add(q)
    return runs, warnings


def read_steps(run: Run) -> list[dict[str, Any]]:
    """The run's steps.jsonl rows (absent or unreadable → []); a torn or foreign line is skipped."""
    try:
        return read_jsonl(run.path / STEPS)
    except OSError:
        return []


# ----------------------------------------------------------------------------------------------- --where
OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
}
CONDITION_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.\[\]]*)\s*(==|!=|>=|<=|>|<)\s*(.*?)\s*$")


@dataclass(frozen=True)
class Condition:
    """One `KEY OP VALUE` of --where; VALUE is a number, true/false, null or text (`digits`, `'a b'`)."""

    key: str
    op: str
    value: Any
    text: str

    def matches(self, run: Run) -> bool:
        v = run_value(run, self.key)
        target = self.value
        if isinstance(v, list) and not isinstance(target, list):
            v = v[0] if v else None  # per-head accuracies: the first head
        if self.op in ("==", "!="):
            return (self.op == "==") == equal(v, target)
        a, b = number(v), number(target)
        if a is not None and b is not None:
            return OPS[self.op](a, b)
        if isinstance(v, str) and isinstance(target, str):
            return OPS[self.op](v, target)
        return False


def equal(v: Any, target: Any) -> bool:
    """`==` of --where: numbers by value, null only equals null, a boolean as true/false text, values of
    one type directly, anything else as text."""
    a, b = number(v), number(target)
    if a is not None and b is not None:
        return a == b
    if v is None or target is None:
        return v is None and target is None
    if isinstance(v, bool) or isinstance(target, bool):
        return str(v).lower() == str(target).lower()
    return v == target if type(v) is type(target) else str(v) == str(target)


def parse_value(raw: str) -> Any:
    """A --where value: a quoted string as is; else an int, a float (`1e-3` too), true/false, null, or text."""
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    low = raw.lower()
    if low in ("true", "false"):
        return low == "true"
    return None if low in ("null", "~") else raw


def parse_where(exprs: Sequence[str], runs: Sequence[Run] = (), keys: KeyIndex | None = None) -> list[Condition]:
    """Parse --where expressions: `KEY OP VALUE` joined by `and` (or given as several expressions).

    No eval: each condition must match `KEY OP VALUE` with OP in == != > >= < <=. With `runs`, every KEY
    must be a built-in column or a config/summary key of some run (else a CompareError with close matches);
    `keys` is those runs' KeyIndex when the caller has one.
    """
    if runs and keys is None and exprs:
        keys = KeyIndex(runs)
    out = []
    for expr in exprs:
        if re.search(r"\s(or|OR)\s", expr):
            raise CompareError(f"--where: 'or' is not supported in {expr.strip()!r}; conditions are joined by 'and'")
        for part in re.split(r"\s+and\s+", expr.strip()):
            m = CONDITION_RE.match(part)
            if not part.strip() or not m or not m.group(3) or m.group(3)[0] in "<>=!":
                raise CompareError(
                    f"--where: cannot read {part.strip()!r}; expected KEY OP VALUE with OP one of "
                    "== != > >= < <= (e.g. regularizer.l2_decay>0), conditions joined by 'and'"
                )
            key, op, raw = m.groups()
            value = parse_value(raw)
            if op not in ("==", "!=") and number(value) is None:
                raise CompareError(f"--where: {part.strip()!r}: {op} needs a number, got {raw.strip()!r}")
            if key == "n":
                raise CompareError(
                    "--where: n is the size of a seed group, known only after grouping; --where filters runs"
                )
            if keys is not None:
                keys.check(key, "--where")
            out.append(Condition(key, op, value, part.strip()))
    return out
