"""compare's columns: the built-in ones, how a run's value of any key is read, and how a cell is printed.

A column is a built-in column (`COLUMNS`), a resolved config key (`optimizer.lr`, `model.layers[2].keep_prob`)
or a summary field (`test_loss`); `config.KEY` / `summary.KEY` pick the file explicitly.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..config import get_key as lookup
from ..core.errors import ConfigError, RegbenchError
from ..core.layerlist import config_layers, regularizer_setting, summary, walk
from ..core.stats import Stat
from ..core.values import number, per_head
from ..rundir import Run


class CompareError(RegbenchError):
    """Bad input to compare or report: no runs found, an unknown key, a malformed --where, a bad baseline."""


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


# ----------------------------------------------------------------------------------------------- config texts
def model_summary(config: dict[str, Any]) -> str:
    """The layer list in the course reports' style: `conv(3,6)-max(2)-conv(3,12)-max(2)-conv(3,24)-avg(3)`."""
    layers = config_layers(config)
    try:
        return summary(layers) or "-"
    except ConfigError:  # a hand-edited or foreign config: show the layer types as they are
        if isinstance(layers, list):
            return "-".join(str(e[0] if isinstance(e, list) and e else e) for e in layers)
        return "?"


def regularizer_text(config: dict[str, Any]) -> str:
    """`l2 0.1`, `l1 0.01`, `dropout 0.6` (keep_prob), `noise 0.01` (std), `batch_normal`, or `-` for none.

    Regularizing layers are found at any depth (inside serial, residual and parallel blocks too); several
    settings of one kind are joined by `/` (`dropout 0.8/0.5`)."""
    parts = []
    for kind in ("l2", "l1"):
        decay = number(lookup(config, f"regularizer.{kind}_decay"))
        if decay:
            parts.append(f"{kind} {decay:g}")
    if parts and lookup(config, "regularizer.mode") == "penalty":
        parts[-1] += " (penalty)"
    found: dict[str, list[str]] = {}
    try:
        for entry in walk(config_layers(config)):
            text = regularizer_setting(entry)
            if text is not None and text not in found.setdefault(entry.type, []):
                found[entry.type].append(text)
    except ConfigError:
        pass  # no layer list, or a hand-edited one: the layers read before the bad entry
    for kind, texts in found.items():
        parts.append(f"{kind} {'/'.join(texts)}".strip())
    return ", ".join(parts) or "-"


def optimizer_text(config: dict[str, Any]) -> str:
    """`sgd 0.01`: the optimizer's name and learning rate."""
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


def time_share(run: Run) -> float | None:
    """The run's share of its pass's training wall time: `train_s` divided among the members trained side by
    side (older runs without `train_s_share` recorded it only when they trained alone)."""
    share = number(run.summary.get("train_s_share"))
    if share is not None:
        return share
    wall, k = number(run.summary.get("train_s")), run.summary.get("side_by_side") or 1
    return None if wall is None or not isinstance(k, int) else wall / k


def engine_text(summary: dict[str, Any]) -> str | None:
    """`alone` or `×K` (side by side with K members) with the CPU threads: `alone 2t`, `×4 1t`."""
    k = summary.get("members") or summary.get("side_by_side") or (1 if "train_s" in summary else None)
    if not isinstance(k, int):
        return None
    threads = summary.get("threads")
    return ("alone" if k == 1 else f"×{k}") + (f" {threads}t" if isinstance(threads, int) else "")


def run_notes(summary: dict[str, Any]) -> str | None:
    """Diagnostics a reader should see beside the numbers: batch_normal running averages that still hold a
    large share of their initial values (a low test accuracy may come from them)."""
    bn = summary.get("bn_unconverged")
    if isinstance(bn, dict) and number(bn.get("initial_share")) is not None:
        return f"BN averages {bn['initial_share']:.0%} initial"
    return None


def whole(v: Any) -> int | None:
    """An int as stored (a bool is not one), else None."""
    return v if isinstance(v, int) and not isinstance(v, bool) else None


# ----------------------------------------------------------------------------------------------- built-in columns
COLUMNS: dict[str, Column] = {
    c.key: c
    for c in [
        Column("name", "name", lambda r: r.config.get("name") or r.summary.get("name") or r.name, "text"),
        Column("n", "n", lambda r: 1, "text"),
        Column("data", "data", lambda r: lookup(r.config, "data.name") or lookup(r.summary, "data.name"), "config"),
        Column("model", "model", lambda r: model_summary(r.config), "config"),
        Column("regularizer", "regularizer", lambda r: regularizer_text(r.config), "config"),
        Column("optimizer", "optimizer", lambda r: optimizer_text(r.config), "config"),
        Column("epochs", "epochs", lambda r: whole(r.summary.get("epochs_done")), "config", "d"),
        Column("test_acc", "test acc", lambda r: per_head(r.summary.get("test_acc"))),
        Column("best_val_acc", "best val", lambda r: number(r.summary.get("best_val_acc"))),
        Column("best_epoch", "@epoch", lambda r: whole(r.summary.get("best_epoch")), fmt=".1f"),
        Column("train_acc", "train acc", lambda r: per_head(r.summary.get("train_acc"))),
        Column("gap", "train−val", gap),
        Column("train_s_share", "train s/member", time_share, fmt=".1f"),
        Column("engine", "engine", lambda r: engine_text(r.summary), "text"),
        Column("near_zero_pct", "near 0 %", lambda r: number(lookup(r.summary, "params.near_zero_pct")), fmt=".1f"),
        Column("w_mean", "w mean", lambda r: number(lookup(r.summary, "params.mean"))),
        Column("w_std", "w std", lambda r: number(lookup(r.summary, "params.std"))),
        Column("status", "status", lambda r: r.status, "text"),
        Column("notes", "notes", lambda r: run_notes(r.summary), "text"),
    ]
}  # fmt: skip
DEFAULT_COLUMNS = list(COLUMNS)
# hidden first when the Rich table is wider than the terminal; columns picked with --columns that are not
# listed here go after these (the last picked first), then LAST_HIDDEN; NEVER_HIDDEN and the metric stay
HIDE_ORDER = (
    *("w_mean", "engine", "best_epoch", "data", "epochs", "optimizer", "w_std", "near_zero_pct", "train_s_share"),
    *("seeds_80", "ci", "test", "train_acc", "best_val_acc", "gap", "notes", "model"),
)
LAST_HIDDEN = ("n", "delta", "status", "p_holm")
NEVER_HIDDEN = ("name", "regularizer", "test_acc", "p", "verdict")
# added after the others when --baseline is given: Δ, its 95% CI, the test, its p, p after Holm's correction
# across the table (what the verdict reads), the verdict, and the seeds per group 80% power would need
BASELINE_COLUMNS = ("delta", "ci", "test", "p", "p_holm", "verdict", "seeds_80")
BASELINE_HEADERS = {"ci": "95% CI", "p_holm": "p (Holm)", "seeds_80": "seeds for 80%"}
LOWER_IS_BETTER = (
    "loss",
    "train_s",
    "gap",
    "_s",
)  # a metric whose key contains one of these improves downward


def is_numeric(key: str) -> bool:
    """Whether a column holds numbers (right-aligned in the table and Markdown)."""
    return (
        key in ("n", "delta", "p", "p_holm", "seeds_80")
        or (key in COLUMNS and COLUMNS[key].kind == "result")
        or key == "epochs"
    )


# ----------------------------------------------------------------------------------------------- keys
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
    """`result`, `config` or `text`: how a seed group aggregates the column (see Column)."""
    if key in COLUMNS:
        return COLUMNS[key].kind
    if key_source(key) == "summary":
        return "result"
    if key_source(key) == "config" or any(lookup(r.config, key) is not None for r in runs):
        return "config"
    return "result"


def flat_nodes(data: Any, prefix: str = "") -> Iterable[tuple[str, bool]]:
    """`(dotted key, whether it holds a mapping)` for every key of nested mappings, inner nodes included."""
    if isinstance(data, dict):
        for k, v in data.items():
            key = f"{prefix}{k}"
            inner = isinstance(v, dict)
            yield key, inner
            if inner:
                yield from flat_nodes(v, key + ".")


def known_keys(runs: Sequence[Run]) -> list[str]:
    """Every key a column, condition or sort may name: built-in columns, then the runs' config and summary
    keys (leaves first, then sections), each also with an explicit `config.`/`summary.` prefix.

    One walk per run (runs of one sweep or suite share their keys, so the dicts stay small); compare builds
    it once per table (`KeyIndex`), not once per checked key."""
    leaves: dict[str, None] = dict.fromkeys([*COLUMNS, *BASELINE_COLUMNS])
    inner: dict[str, None] = {}
    for r in runs:
        for source, data in (("config", r.config), ("summary", r.summary)):
            for k, is_inner in flat_nodes(data):
                (inner if is_inner else leaves)[k] = None
                inner[f"{source}.{k}"] = None
    return list(leaves) + [k for k in inner if k not in leaves]


class KeyIndex:
    """The keys of a set of runs, read once: `check` answers for each --columns, --where, --sort and --metric
    key without walking the runs again (which, per key, grew with runs × keys)."""

    def __init__(self, runs: Sequence[Run]):
        self.runs = runs
        self.known = known_keys(runs)
        self._set = set(self.known)

    def check(self, key: str, option: str, extra: Sequence[str] = ()) -> str:
        """`key` if some run (or a built-in column) has it; else a CompareError naming close matches."""
        if key in self._set or key in extra:
            return key
        if "[" in key and any(run_value(r, key) is not None for r in self.runs):  # model.layers[2].chn
            return key
        known = self.known + list(extra)
        pool = known if key_source(key) != "any" else [k for k in known if key_source(k) == "any"]
        sections = {k.rsplit(".", 1)[0] for k in pool if "." in k}
        leaves = [k for k in pool if k not in sections]
        close = difflib.get_close_matches(key, leaves, n=3, cutoff=0.6) or difflib.get_close_matches(
            key, pool, n=3, cutoff=0.6
        )
        hint = (
            f"close: {', '.join(close)}"
            if close
            else f"columns: {', '.join(COLUMNS)}; or any config key or summary field"
        )
        raise CompareError(f"{option}: unknown key '{key}' ({hint})")


# ----------------------------------------------------------------------------------------------- cells
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


def short_text(v: Any) -> str:
    """A value in at most 30 characters (text as is, anything else as JSON), for labels and merged cells."""
    text = v if isinstance(v, str) else json.dumps(v, default=str)
    return text if len(text) <= 30 else text[:27] + "..."
