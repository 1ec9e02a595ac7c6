"""Side-by-side comparison of run directories: rows, seed groups, filters, a baseline verdict, output formats.

`compare(paths)` reads every run directory under `paths` (a directory of runs is searched recursively),
keeps the runs that match `--where`, groups completed runs whose resolved configs differ only by `seed`
into one row (numeric results become mean ± std over the seeds), optionally tests each row against a
baseline row, and returns a `Comparison` whose `.rows` and `.columns` render as a Rich table, CSV,
Markdown or JSON, or as a pandas DataFrame. It only reads run directories; it never writes into them.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import get_key as lookup
from ..core.errors import RegbenchError, RunDirError
from ..core.stats import Stat, Verdict, verdict
from ..rundir import CONFIG, STEPS, SUMMARY, Run, load_run, read_jsonl

FORMATS = ("table", "csv", "markdown", "json")
# keys that change what is printed, not what is trained: runs differing only in these (and `seed`) group
DISPLAY_ONLY = (  # (and keys that only change speed or bookkeeping, not the numbers)
    "seed",
    "train.report",
    "train.show",
    "train.show_params",
    "train.threads",
    "train.checkpoint_every",
)


class CompareError(RegbenchError):
    """Bad input to compare or report: no runs found, an unknown key, a malformed --where, a bad baseline."""


# ----------------------------------------------------------------------------------------------- columns
@dataclass(frozen=True)
class Column:
    """A built-in column: its header, how a run's value is read, and how numbers are printed.

    `kind` decides what a seed group shows: `result` columns become mean ± std over the seeds, `config`
    and `text` columns show the common value (or the distinct values joined by commas).
    """

    key: str
    header: str
    get: Callable[[Run], Any]
    kind: str = "result"  # result | config | text
    fmt: str = ".3f"


def number(v: Any) -> float | None:
    """A finite int/float as float, else None (bools, strings and NaN from a hand-edited file are not numbers)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def per_head(v: Any) -> float | list[float] | None:
    """An accuracy as stored: a number for one head, a list for several; anything else is None."""
    if isinstance(v, list):
        vals = [number(x) for x in v]
        return None if not vals or any(x is None for x in vals) else vals  # type: ignore[return-value]
    return number(v)


def first(v: Any) -> float | None:
    """The first head's value of a per-head number or list."""
    if isinstance(v, list):
        return number(v[0]) if v else None
    return number(v)


def model_summary(config: dict[str, Any]) -> str:
    """The layer list in the course reports' style: `conv(3,6)-max(2)-conv(3,12)-max(2)-conv(3,24)-avg(3)`."""
    from ..nn.layers import describe_spec, parse_layers

    layers = lookup(config, "model.layers")
    try:
        return "-".join(describe_spec(s) for s in parse_layers(layers)) or "-"
    except Exception:  # a hand-edited or foreign config: show the layer types as they are
        if isinstance(layers, list):
            return "-".join(str(e[0] if isinstance(e, list) and e else e) for e in layers)
        return "?"


def regularizer_text(config: dict[str, Any]) -> str:
    """`l2 0.1`, `l1 0.01`, `dropout 0.6` (keep_prob), `noise 0.01` (std), `batch_normal`, or `-` for none."""
    parts = []
    for kind in ("l2", "l1"):
        decay = number(lookup(config, f"regularizer.{kind}_decay"))
        if decay:
            parts.append(f"{kind} {decay:g}")
    if parts and lookup(config, "regularizer.mode") == "penalty":
        parts[-1] += " (penalty)"
    layers = lookup(config, "model.layers")
    found: dict[str, list[str]] = {}
    for entry in layers if isinstance(layers, list) else []:
        if not isinstance(entry, list) or not entry:
            continue
        kind, params = entry[0], entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
        if kind == "dropout":
            text = f"{params.get('keep_prob', 1.0):g}"
        elif kind == "noise":
            if params.get("type", "normal") == "uniform":
                text = f"uniform {params.get('low', 0):g}..{params.get('high', 0):g}"
            else:
                text = f"{params.get('std', 1.0):g}"
        elif kind == "batch_normal":
            text = ""
        else:
            continue
        if text not in found.setdefault(kind, []):
            found[kind].append(text)
    for kind, texts in found.items():
        parts.append(f"{kind} {'/'.join(texts)}".strip())
    return ", ".join(parts) or "-"


def optimizer_text(config: dict[str, Any]) -> str:
    name, lr = lookup(config, "optimizer.name"), number(lookup(config, "optimizer.lr"))
    return f"{name or '?'} {lr:g}" if lr is not None else str(name or "-")


def gap(run: Run) -> float | list[float] | None:
    """Final train accuracy minus final validation accuracy, per head."""
    tr, va = per_head(run.summary.get("train_acc")), per_head(run.summary.get("val_acc"))
    if isinstance(tr, float) and isinstance(va, float):
        return tr - va
    if isinstance(tr, list) and isinstance(va, list) and len(tr) == len(va):
        return [a - b for a, b in zip(tr, va, strict=True)]
    return None


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


COLUMNS: dict[str, Column] = {
    c.key: c
    for c in [
        Column("name", "name", lambda r: r.config.get("name") or r.summary.get("name") or r.name, "text"),
        Column("n", "n", lambda r: 1, "text"),
        Column("data", "data", lambda r: lookup(r.config, "data.name") or lookup(r.summary, "data.name"), "config"),
        Column("model", "model", lambda r: model_summary(r.config), "config"),
        Column("regularizer", "regularizer", lambda r: regularizer_text(r.config), "config"),
        Column("optimizer", "optimizer", lambda r: optimizer_text(r.config), "config"),
        Column("epochs", "epochs", lambda r: _int(r.summary.get("epochs_done")), "config", "d"),
        Column("test_acc", "test acc", lambda r: per_head(r.summary.get("test_acc"))),
        Column("best_val_acc", "best val", lambda r: number(r.summary.get("best_val_acc"))),
        Column("best_epoch", "@epoch", lambda r: _int(r.summary.get("best_epoch")), fmt=".1f"),
        Column("train_acc", "train acc", lambda r: per_head(r.summary.get("train_acc"))),
        Column("gap", "train−val", gap),
        Column("train_s", "train s", lambda r: number(r.summary.get("train_s")), fmt=".1f"),
        Column("near_zero_pct", "near 0 %", lambda r: number(lookup(r.summary, "params.near_zero_pct")), fmt=".1f"),
        Column("w_mean", "w mean", lambda r: number(lookup(r.summary, "params.mean"))),
        Column("w_std", "w std", lambda r: number(lookup(r.summary, "params.std"))),
        Column("status", "status", lambda r: r.status, "text"),
    ]
}  # fmt: skip
DEFAULT_COLUMNS = list(COLUMNS)
# hidden first when the Rich table is wider than the terminal (never: name, test_acc, status, the verdict)
HIDE_ORDER = (
    *("w_mean", "best_epoch", "data", "epochs", "optimizer", "model", "w_std", "near_zero_pct", "train_s"),
    *("p", "train_acc", "best_val_acc", "gap", "n", "regularizer"),
)
BASELINE_COLUMNS = ("delta", "p", "verdict")  # added after the others when --baseline is given
LOWER_IS_BETTER = (
    "loss",
    "train_s",
    "gap",
    "_s",
)  # a metric whose key contains one of these improves downward


def flat_keys(data: Any, prefix: str = "") -> Iterable[str]:
    """Every dotted key of nested mappings, inner nodes included (`regularizer`, `regularizer.l2_decay`)."""
    if isinstance(data, dict):
        for k, v in data.items():
            key = f"{prefix}{k}"
            yield key
            yield from flat_keys(v, key + ".")


def key_source(key: str) -> str:
    """`config` or `summary` for an explicit `config.`/`summary.` prefix, else `any`."""
    head = key.split(".", 1)[0]
    return head if head in ("config", "summary") and "." in key else "any"


def run_value(run: Run, key: str) -> Any:
    """A run's value of a column: a built-in column, else a resolved config key, else a summary field.

    `config.KEY` and `summary.KEY` pick the file explicitly (`data.name` is in both; they agree)."""
    if key in COLUMNS:
        return COLUMNS[key].get(run)
    source = key_source(key)
    if source != "any":
        return lookup(run.config if source == "config" else run.summary, key.split(".", 1)[1])
    value = lookup(run.config, key)
    return value if value is not None else lookup(run.summary, key)


def column_kind(key: str, runs: Sequence[Run]) -> str:
    if key in COLUMNS:
        return COLUMNS[key].kind
    if key_source(key) == "summary":
        return "result"
    if key_source(key) == "config" or any(lookup(r.config, key) is not None for r in runs):
        return "config"
    return "result"


def known_keys(runs: Sequence[Run]) -> list[str]:
    """Every key a column, condition or sort may name: built-in columns, then the runs' config and summary
    keys (leaves first, then sections), each also with an explicit `config.`/`summary.` prefix."""
    leaves: dict[str, None] = dict.fromkeys([*COLUMNS, *BASELINE_COLUMNS])
    inner: dict[str, None] = {}
    for r in runs:
        for source, data in (("config", r.config), ("summary", r.summary)):
            for k in flat_keys(data):
                (leaves if not isinstance(lookup(data, k), dict) else inner).setdefault(k)
                inner.setdefault(f"{source}.{k}")
    return list(leaves) + [k for k in inner if k not in leaves]


def check_key(key: str, runs: Sequence[Run], option: str, extra: Sequence[str] = ()) -> str:
    """`key` if some run (or a built-in column) has it; else a CompareError naming close matches."""
    known = known_keys(runs) + list(extra)
    if key in known or ("[" in key and any(run_value(r, key) is not None for r in runs)):  # model.layers[2].chn
        return key
    pool = known if key_source(key) != "any" else [k for k in known if key_source(k) == "any"]
    leaves = [k for k in pool if not any(o.startswith(k + ".") for o in pool)]
    close = difflib.get_close_matches(key, leaves, n=3, cutoff=0.6) or difflib.get_close_matches(
        key, pool, n=3, cutoff=0.6
    )
    hint = (
        f"close: {', '.join(close)}" if close else f"columns: {', '.join(COLUMNS)}; or any config key or summary field"
    )
    raise CompareError(f"{option}: unknown key '{key}' ({hint})")


# ----------------------------------------------------------------------------------------------- collecting
def is_run_dir(path: Path) -> bool:
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
            return (self.op == "==") == _equal(v, target)
        a, b = number(v), number(target)
        if a is not None and b is not None:
            return OPS[self.op](a, b)
        if isinstance(v, str) and isinstance(target, str):
            return OPS[self.op](v, target)
        return False


def _equal(v: Any, target: Any) -> bool:
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


def parse_where(exprs: Sequence[str], runs: Sequence[Run] = ()) -> list[Condition]:
    """Parse --where expressions: `KEY OP VALUE` joined by `and` (or given as several expressions).

    No eval: each condition must match `KEY OP VALUE` with OP in == != > >= < <=. With `runs`, every KEY
    must be a built-in column or a config/summary key of some run (else a CompareError with close matches).
    """
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
            if runs:
                check_key(key, runs, "--where")
            out.append(Condition(key, op, value, part.strip()))
    return out


# ----------------------------------------------------------------------------------------------- rows
@dataclass
class Row:
    """One line of the table: a single run, or a seed group (runs whose configs differ only by `seed`).

    `values` maps each column to what the row shows: a number, a per-head list, a `Stat` (mean ± std over
    a group's seeds) or a list of Stats, text, or None (no value).
    """

    label: str
    runs: list[Run]
    values: dict[str, Any] = field(default_factory=dict)
    verdict: Verdict | None = None

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def is_group(self) -> bool:
        return len(self.runs) > 1


def group_key(run: Run) -> str:
    """The resolved config without `seed` (and display-only keys), as canonical JSON."""
    import copy

    cfg = copy.deepcopy(run.config)
    for key in DISPLAY_ONLY:
        *parents, last = key.split(".")
        node = lookup(cfg, ".".join(parents)) if parents else cfg
        if isinstance(node, dict):
            node.pop(last, None)
    return json.dumps(cfg, sort_keys=True, default=str)


def make_rows(runs: Sequence[Run], group: bool = True, warnings: list[str] | None = None) -> list[Row]:
    """One row per completed seed group (or per run with group=False) and one per run that is not completed
    (running, failed, interrupted, diverged: shown alone with its status, never mixed into a mean).

    A seed counts once per group: when the same config was run twice with the same seed (identical
    numbers on a CPU), only the newest run is kept and a warning names the others, so n and the
    statistics are over distinct seeds.
    """
    groups: dict[str, list[Run]] = {}
    for run in runs:
        key = group_key(run) if group and run.status == "completed" else f"run:{run.path.resolve()}"
        groups.setdefault(key, []).append(run)
    rows = []
    for members in groups.values():
        by_seed: dict[Any, list[Run]] = {}
        for run in members:
            by_seed.setdefault(run.config.get("seed"), []).append(run)
        kept = []
        for seed, same in by_seed.items():
            same.sort(key=lambda r: str(r.summary.get("ended_at") or r.summary.get("started_at") or ""))
            kept.append(same[-1])
            if len(same) > 1 and warnings is not None:
                others = ", ".join(r.name for r in same[:-1])
                warnings.append(f"seed {seed} of {same[-1].name} was also run as {others}; counted once (the newest)")
        rows.append(Row("", sorted(kept, key=lambda r: str(r.path))))
    label_rows(rows)
    return rows


def label_rows(rows: list[Row]) -> None:
    """A single run is labelled by its directory name; a group by its config name, plus the keys that tell
    apart groups of the same name (`digits_cnn [optimizer.lr=0.01]`)."""
    by_name: dict[str, list[Row]] = {}
    for row in rows:
        if row.is_group:
            by_name.setdefault(str(COLUMNS["name"].get(row.runs[0])), []).append(row)
        else:
            row.label = row.runs[0].name
    for name, same in by_name.items():
        if len(same) == 1:
            same[0].label = name
            continue
        flats = [dict(_flat_items(json.loads(group_key(r.runs[0])))) for r in same]
        keys = sorted({k for f in flats for k in f if len({json.dumps(g.get(k), default=str) for g in flats}) > 1})
        for i, (row, f) in enumerate(zip(same, flats, strict=True), 1):
            shown = [f"{k}={_short(f.get(k))}" for k in keys[:2]]
            row.label = f"{name} [{', '.join(shown)}]" if shown and len(keys) <= 2 else f"{name} #{i}"
    seen: dict[str, int] = {}
    for row in rows:  # two groups the suffix cannot tell apart still get distinct labels
        seen[row.label] = seen.get(row.label, 0) + 1
        if seen[row.label] > 1:
            row.label = f"{row.label} #{seen[row.label]}"


def _flat_items(data: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _flat_items(v, f"{prefix}{k}.")
    else:
        yield prefix[:-1], data


def _short(v: Any) -> str:
    text = v if isinstance(v, str) else json.dumps(v, default=str)
    return text if len(text) <= 30 else text[:27] + "..."


def aggregate(values: Sequence[Any], kind: str) -> Any:
    """A group's cell: `result` numbers → Stat (per head for lists); otherwise the common value, or the
    distinct values joined by commas (e.g. the seeds)."""
    if len(values) == 1:
        return values[0]
    present = [v for v in values if v is not None]
    if not present:
        return None
    if kind == "result":
        if all(number(v) is not None for v in present):
            return Stat.of([float(v) for v in present])
        if all(isinstance(v, list) and v and all(number(x) is not None for x in v) for v in present) and (
            len({len(v) for v in present}) == 1
        ):
            return [Stat.of(col) for col in zip(*present, strict=True)]
    distinct = list(dict.fromkeys(json.dumps(v, sort_keys=True, default=str) for v in present))
    if len(distinct) == 1:
        return present[0]
    return ",".join(_short(json.loads(d)) for d in distinct)


def fill(row: Row, columns: Sequence[str], all_runs: Sequence[Run]) -> None:
    for key in columns:
        if key == "name":
            row.values[key] = row.label
        elif key == "n":
            row.values[key] = row.n
        elif key not in BASELINE_COLUMNS:
            row.values[key] = aggregate([run_value(r, key) for r in row.runs], column_kind(key, all_runs))


# ----------------------------------------------------------------------------------------------- baseline
def find_baseline(rows: Sequence[Row], spec: str) -> Row:
    """The row a --baseline names: a row label, a run directory path or name, or a config name."""
    for row in rows:
        if row.label == spec:
            return row
    p = Path(spec)
    if p.exists():
        target = p.resolve()
        for row in rows:
            if any(r.path.resolve() == target for r in row.runs):
                return row
    for row in rows:
        if any(r.name == spec for r in row.runs):
            return row
    named = [row for row in rows if any(COLUMNS["name"].get(r) == spec for r in row.runs)]
    if len(named) == 1:
        return named[0]
    labels = ", ".join(row.label for row in (named or rows))
    if named:
        raise CompareError(f"--baseline: '{spec}' names several rows ({labels}); give a row label or a run path")
    raise CompareError(f"--baseline: '{spec}' is not among the compared runs (rows: {labels})")


def higher_is_better(metric: str) -> bool:
    return not any(s in metric for s in LOWER_IS_BETTER)


def metric_values(row: Row, metric: str) -> list[float]:
    """The first head's value of `metric` for each completed run of the row."""
    vals = [first(run_value(r, metric)) for r in row.runs if r.status == "completed"]
    return [v for v in vals if v is not None]


# ----------------------------------------------------------------------------------------------- output
def cell_text(key: str, value: Any, fmt: str | None = None) -> str:
    """How a cell reads in the table and Markdown: `0.874`, `0.874+0.558` per head, `0.874±0.012` for a group."""
    if fmt is None:
        fmt = COLUMNS[key].fmt if key in COLUMNS else ""
    if value is None:
        return "-"
    if isinstance(value, Stat):
        mean = cell_text(key, value.mean, fmt if fmt != "d" else ".1f")
        return mean if value.std is None else f"{mean}±{cell_text(key, value.std, fmt if fmt != 'd' else '.1f')}"
    if isinstance(value, list) and value and all(isinstance(v, (Stat, int, float)) for v in value):
        return "+".join(cell_text(key, v, fmt) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return format(value, fmt) if fmt and fmt != "d" else f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)


@dataclass
class Comparison:
    """The result of `compare`: rows, the columns shown, warnings about skipped paths, the baseline."""

    rows: list[Row]
    columns: list[str]
    warnings: list[str] = field(default_factory=list)
    baseline: Row | None = None
    metric: str = "test_acc"

    @property
    def runs(self) -> list[Run]:
        return [r for row in self.rows for r in row.runs]

    def header(self, key: str) -> str:
        if key == "delta":
            return f"Δ {COLUMNS[self.metric].header if self.metric in COLUMNS else self.metric}"
        return COLUMNS[key].header if key in COLUMNS else key

    def text(self, row: Row, key: str) -> str:
        if key in BASELINE_COLUMNS:
            v = row.verdict
            if v is None:
                return ""
            if key == "delta":
                return "-" if math.isnan(v.delta) else f"{v.delta:+.3f}"
            if key == "p":
                return "-" if v.p is None else (f"{v.p:.3f}" if v.p >= 0.001 else "<0.001")
            return v.text
        return cell_text(key, row.values.get(key))

    def table_rows(self) -> list[list[str]]:
        """Every row as display text, in column order (what the table and Markdown show)."""
        return [[self.text(row, k) for k in self.columns] for row in self.rows]

    # -- machine-readable forms
    def record(self, row: Row) -> dict[str, Any]:
        """A row as JSON-ready data: numbers stay numbers; a Stat is {mean, std, n, values}."""
        out: dict[str, Any] = {}
        for key in self.columns:
            if key in BASELINE_COLUMNS:
                v = row.verdict
                out[key] = None if v is None else {"delta": _num(v.delta), "p": v.p, "verdict": v.text}[key]
            else:
                out[key] = _jsonable(row.values.get(key))
        out["runs"] = [str(r.path) for r in row.runs]
        return out

    def to_json(self) -> str:
        data = {
            "columns": self.columns,
            "metric": self.metric,
            "baseline": self.baseline.label if self.baseline else None,
            "rows": [self.record(row) for row in self.rows],
            "warnings": self.warnings,
        }
        return json.dumps(data, indent=2, ensure_ascii=False)

    def flat_records(self) -> list[dict[str, Any]]:
        """One flat dict per row for CSV and pandas: a group's column gives `col` (mean) and `col_std`; a
        per-head column gives `col[1]`, `col[2]`…"""
        heads: dict[str, int] = {}
        grouped: set[str] = set()
        for row in self.rows:
            for key in self.columns:
                v = row.values.get(key)
                if isinstance(v, list) and v and all(isinstance(x, (Stat, int, float)) for x in v):
                    heads[key] = max(heads.get(key, 1), len(v))
                    if any(isinstance(x, Stat) for x in v):
                        grouped.add(key)
                if isinstance(v, Stat):
                    grouped.add(key)
        records = []
        for row in self.rows:
            rec: dict[str, Any] = {}
            for key in self.columns:
                if key in BASELINE_COLUMNS:
                    v = row.verdict
                    rec[key] = None if v is None else {"delta": _num(v.delta), "p": v.p, "verdict": v.text}[key]
                    continue
                v = row.values.get(key)
                if key in heads:
                    items = v if isinstance(v, list) else [v] if v is not None else []
                    for h in range(heads[key]):
                        x = items[h] if h < len(items) else None
                        rec[f"{key}[{h + 1}]"] = x.mean if isinstance(x, Stat) else _num(x)
                        if key in grouped:
                            rec[f"{key}[{h + 1}]_std"] = x.std if isinstance(x, Stat) else None
                    continue
                rec[key] = v.mean if isinstance(v, Stat) else _scalar(v)
                if key in grouped:
                    rec[f"{key}_std"] = v.std if isinstance(v, Stat) else None
            records.append(rec)
        return records

    def to_csv(self) -> str:
        return csv_text(self.flat_records(), list(self.columns))

    def to_pandas(self):
        """The table as a pandas DataFrame (pandas is imported only here; it is not a dependency)."""
        try:
            import pandas as pd
        except ImportError:
            raise CompareError("to_pandas() needs pandas: pip install pandas") from None
        return pd.DataFrame(self.flat_records())

    # -- human-readable forms
    def to_markdown(self) -> str:
        def esc(s: str) -> str:
            return s.replace("|", "\\|").replace("\n", " ")

        lines = [
            "| " + " | ".join(esc(self.header(k)) for k in self.columns) + " |",
            "|" + "|".join("---:" if self._numeric(k) else "---" for k in self.columns) + "|",
        ]
        lines += ["| " + " | ".join(esc(c) for c in cells) + " |" for cells in self.table_rows()]
        return "\n".join(lines) + "\n"

    def _numeric(self, key: str) -> bool:
        return key in ("n", "delta", "p") or (key in COLUMNS and COLUMNS[key].kind == "result") or key == "epochs"

    def title(self) -> str:
        groups = sum(1 for row in self.rows if row.is_group)
        text = f"{len(self.runs)} runs in {len(self.rows)} rows"
        if groups:
            text += f" ({groups} seed groups: mean±std over n seeds)"
        if self.baseline:
            text += f"; baseline {self.baseline.label}, verdict on {self.metric} (Welch's t-test, p<0.05)"
        return text

    def to_rich(self, width: int | None = None):
        """A Rich table. With `width`, optional columns are hidden (named in the caption) until it fits, rather
        than squeezing every column to a few characters."""
        from rich.markup import escape
        from rich.table import Table

        cells_by_row = self.table_rows()
        cols = list(range(len(self.columns)))
        hidden: list[str] = []
        if width:
            need = {i: self._width(i, cells_by_row) for i in cols}
            for key in HIDE_ORDER:
                if sum(need[i] for i in cols) + 1 <= width:
                    break
                if key in self.columns and self.columns.index(key) in cols:
                    cols.remove(self.columns.index(key))
                    hidden.append(key)
        table = Table(title=self.title(), title_justify="left")
        if hidden:
            table.caption = f"hidden to fit {width} columns: {', '.join(hidden)} (see --columns, --format markdown)"
            table.caption_justify = "left"
        for i in cols:
            key = self.columns[i]
            table.add_column(
                self.header(key),
                justify="right" if self._numeric(key) else "left",
                overflow="fold",
                no_wrap=self._numeric(key) or key in ("status", "verdict"),
            )
        styles = {"running": "yellow", "interrupted": "yellow", "failed": "red", "diverged": "red"}
        for row, cells in zip(self.rows, cells_by_row, strict=True):
            status = str(row.values.get("status", row.runs[0].status))
            shown = []
            for i in cols:
                text = escape(cells[i])
                if self.columns[i] == "verdict" and row.verdict:
                    color = {"better": "green", "worse": "red", "baseline": "bold"}.get(row.verdict.text)
                    text = f"[{color}]{text}[/]" if color else text
                shown.append(text)
            table.add_row(*shown, style=styles.get(status, "" if status == "completed" else "dim"))
        return table

    def _width(self, i: int, cells_by_row: list[list[str]]) -> int:
        """Columns a column needs (cell, padding, border); the model summary may fold onto two lines."""
        key = self.columns[i]
        longest = max([len(self.header(key)), *(len(c[i]) for c in cells_by_row)])
        if key in ("model", "name"):
            longest = min(longest, 28)
        return longest + 3

    def render(self, fmt: str) -> str:
        """The table as text: `csv`, `markdown`, `json`, or `table` (Rich's rendering, 200 characters wide)."""
        if fmt == "csv":
            return self.to_csv()
        if fmt == "markdown":
            return self.to_markdown()
        if fmt == "json":
            return self.to_json() + "\n"
        if fmt == "table":
            from rich.console import Console

            console = Console(width=200, record=True, file=io.StringIO())
            console.print(self.to_rich(200))
            return console.export_text()
        raise CompareError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")


def csv_text(records: list[dict[str, Any]], fields: list[str] | None = None) -> str:
    """Records as CSV: the union of their keys as the header (`fields` when there are none), None as ''."""
    buf = io.StringIO()
    keys = list(dict.fromkeys(k for rec in records for k in rec)) or fields or []
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for rec in records:
        w.writerow({k: "" if v is None else v for k, v in rec.items()})
    return buf.getvalue()


def _num(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def _scalar(v: Any) -> Any:
    if isinstance(v, (dict, list)):
        return json.dumps(v, default=str, ensure_ascii=False)
    return v


def _jsonable(v: Any) -> Any:
    if isinstance(v, Stat):
        return v.to_dict()
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


# ----------------------------------------------------------------------------------------------- compare
def compare(
    paths: Iterable[str | Path],
    *,
    where: Sequence[str] = (),
    sort: str | None = None,
    desc: bool = False,
    columns: Sequence[str] | str | None = None,
    baseline: str | None = None,
    metric: str = "test_acc",
    group: bool = True,
    plot: str | Path | None = None,
) -> Comparison:
    """Compare the run directories in (or under) `paths`.

    Args:
        where: `KEY OP VALUE` conditions (joined by `and`) every run must meet, e.g. `data.name==digits`.
        sort: a column to sort the rows by (ascending; `-KEY` or `desc=True` for descending).
        columns: the columns to show (a list or `a,b,c`): built-in columns, config keys or summary fields.
        baseline: a row label, run directory path or name, or config name; adds delta, p and verdict.
        metric: the column the baseline verdict tests (first head; lower is better for losses and times).
        group: put completed runs whose configs differ only by `seed` into one row (mean ± std).
        plot: also write learning curves per row to this PNG.

    Raises CompareError when no run is found or a key, condition or baseline is unknown.
    """
    paths = list(paths)
    runs, warnings = collect_runs(paths)
    if not runs:
        where_text = ", ".join(str(p) for p in paths) or "(no paths given)"
        detail = f" ({'; '.join(warnings)})" if warnings and len(warnings) <= 3 else ""
        raise CompareError(f"no run directories found in {where_text}{detail}")
    conditions = parse_where(where, runs)
    if isinstance(columns, str):
        columns = [c.strip() for c in columns.split(",") if c.strip()]
    cols = list(columns) if columns else list(DEFAULT_COLUMNS)
    for key in cols:
        check_key(key, runs, "--columns")
    if "name" not in cols:
        cols.insert(0, "name")
    metric = check_key(metric, runs, "--metric")
    sort_desc = desc
    if sort and sort.startswith("-"):
        sort, sort_desc = sort[1:], not desc
    if sort:
        check_key(sort, runs, "--sort")

    kept = [r for r in runs if all(c.matches(r) for c in conditions)]
    if conditions and not kept:
        warnings.append(f"no run matches --where {' and '.join(c.text for c in conditions)}")
    rows = make_rows(sorted(kept, key=lambda r: str(r.path)), group=group, warnings=warnings)
    for row in rows:
        fill(row, cols, runs)

    base = None
    if baseline:
        base = find_baseline(rows, baseline)
        ref = metric_values(base, metric)
        for row in rows:
            if row is base:
                row.verdict = Verdict(0.0, None, "baseline")
            else:
                row.verdict = verdict(metric_values(row, metric), ref, higher_is_better=higher_is_better(metric))
        cols += [c for c in BASELINE_COLUMNS if c not in cols]

    if sort:
        rows = sort_rows(rows, sort, sort_desc)
    comp = Comparison(rows, cols, warnings, base, metric)
    if plot:
        plot_curves(comp, plot)
    return comp


def sort_key(value: Any) -> tuple:
    if isinstance(value, Stat):
        value = value.mean
    if isinstance(value, list):
        value = value[0] if value else None
        value = value.mean if isinstance(value, Stat) else value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (2, 0)
    if number(value) is not None:
        return (0, float(value))
    return (1, str(value))


def sort_rows(rows: list[Row], key: str, desc: bool = False) -> list[Row]:
    """Rows by a column (a group by its mean, per-head values by the first head); rows without a value last."""

    def value(row: Row) -> Any:
        if key in BASELINE_COLUMNS:
            v = row.verdict
            return None if v is None else {"delta": v.delta, "p": v.p, "verdict": v.text}[key]
        if key in row.values:
            return row.values[key]
        return aggregate([run_value(r, key) for r in row.runs], "result")

    present = [r for r in rows if sort_key(value(r))[0] < 2]
    missing = [r for r in rows if sort_key(value(r))[0] == 2]
    return sorted(present, key=lambda r: sort_key(value(r)), reverse=desc) + missing


def plot_curves(comp: Comparison, file: str | Path) -> Path:
    """Learning curves of every row of `comp` (mean ± std bands for seed groups) written to `file`."""
    from .plots import Curves, curves

    data = [Curves(row.label, [r.metrics for r in row.runs], [read_steps(r) for r in row.runs]) for row in comp.rows]
    heads = {len(r.summary.get("heads") or [1]) for r in comp.runs}
    note = " — first head" if max(heads, default=1) > 1 else ""
    try:
        return curves(data, Path(file), note)
    except OSError as e:
        raise CompareError(f"--plot {file}: cannot write ({e.strerror or e})") from None
