"""compare's rows: runs grouped into seed groups, each row's cells (mean ± std over a group's seeds), the
baseline row and every row's verdict against it, and the order of the rows."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import PRINT_ONLY
from ..config import get_key as lookup
from ..core.stats import ALPHA, CORRECTION, Outcome, Stat, Verdict, by_seed, judge_table, mcnemar
from ..core.values import first_head, number
from ..rundir import Run
from .columns import BASELINE_COLUMNS, COLUMNS, LOWER_IS_BETTER, CompareError, column_kind, run_value, short_text

# keys left out when telling seed groups apart: the seed, keys only printed (config.PRINT_ONLY), and keys
# that change only speed or bookkeeping, not the numbers
GROUPING_IGNORES = ("seed", *PRINT_ONLY, "train.threads", "train.checkpoint_every")


@dataclass
class TableRow:
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


def group_key(run: Run, split: bool = True) -> str:
    """The resolved config without the GROUPING_IGNORES keys (and without `data.seed` with split=False), as
    canonical JSON: runs with equal keys form one seed group."""
    cfg = dict(run.config)
    for key in (*GROUPING_IGNORES, *(() if split else ("data.seed",))):  # copies only the mappings on each path
        *parents, last = key.split(".")
        node: Any = cfg
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                node = None
                break
            node[part] = node = dict(child)
        if isinstance(node, dict):
            node.pop(last, None)
    try:
        return json.dumps(cfg, sort_keys=True, default=str)
    except TypeError:  # a hand-edited config mixing int and str keys cannot be sorted as is
        return json.dumps(_str_keys(cfg), sort_keys=True, default=str)


def _str_keys(value: Any) -> Any:
    """`value` with every mapping key a string (load_run bounds the depth, so recursion is safe)."""
    if isinstance(value, dict):
        return {str(k): _str_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_str_keys(v) for v in value]
    return value


def split_groups(runs: list[Run]) -> list[list[Run]]:
    """Runs equal apart from seed and split, as seed groups: one group when every run's split seed is its
    seed and they differ (`suite --vary-split`), else one group per split seed (`data.seed`)."""
    splits = [lookup(r.config, "data.seed") for r in runs]
    if len(set(map(str, splits))) > 1 and all(s == r.config.get("seed") for s, r in zip(splits, runs, strict=True)):
        return [runs]
    by_split: dict[str, list[Run]] = {}
    for s, r in zip(splits, runs, strict=True):
        by_split.setdefault(str(s), []).append(r)
    return list(by_split.values())


def make_rows(runs: Sequence[Run], group: bool = True, warnings: list[str] | None = None) -> list[TableRow]:
    """One row per completed seed group (or per run with group=False) and one per run that is not completed
    (running, failed, interrupted, diverged: shown alone with its status, never mixed into a mean).

    A seed counts once per group: when the same config was run twice with the same seed (identical
    numbers on a CPU), only the newest run is kept and a warning names the others, so n and the
    statistics are over distinct seeds.
    """
    keyed: dict[str, list[Run]] = {}
    for run in runs:
        key = group_key(run, split=False) if group and run.status == "completed" else f"run:{run.path.resolve()}"
        keyed.setdefault(key, []).append(run)
    rows = []
    for members in (g for same in keyed.values() for g in split_groups(same)):
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
        rows.append(TableRow("", sorted(kept, key=lambda r: str(r.path))))
    label_rows(rows)
    return rows


def label_rows(rows: list[TableRow]) -> None:
    """A single run is labelled by its directory name; a group by its config name, plus the keys that tell
    apart groups of the same name (`digits_cnn [optimizer.lr=0.01]`)."""
    by_name: dict[str, list[TableRow]] = {}
    for row in rows:
        if row.is_group:
            by_name.setdefault(str(COLUMNS["name"].get(row.runs[0])), []).append(row)
        else:
            row.label = row.runs[0].name
    for name, same in by_name.items():
        if len(same) == 1:
            same[0].label = name
            continue
        flats = [dict(flat_items(json.loads(group_key(r.runs[0])))) for r in same]
        every = dict.fromkeys(k for f in flats for k in f)  # each key tested once, not once per group holding it
        keys = sorted(k for k in every if len({json.dumps(g.get(k), default=str) for g in flats}) > 1)
        for i, (row, f) in enumerate(zip(same, flats, strict=True), 1):
            shown = [f"{k}={short_text(f.get(k))}" for k in keys[:2]]
            row.label = f"{name} [{', '.join(shown)}]" if shown and len(keys) <= 2 else f"{name} #{i}"
    seen: dict[str, int] = {}
    for row in rows:  # two groups the suffix cannot tell apart still get distinct labels
        seen[row.label] = seen.get(row.label, 0) + 1
        if seen[row.label] > 1:
            row.label = f"{row.label} #{seen[row.label]}"


def flat_items(data: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    """`(dotted key, leaf value)` of every leaf of nested mappings."""
    if isinstance(data, dict):
        for k, v in data.items():
            yield from flat_items(v, f"{prefix}{k}.")
    else:
        yield prefix[:-1], data


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
    return ",".join(short_text(json.loads(d)) for d in distinct)


def fill(row: TableRow, columns: Sequence[str], all_runs: Sequence[Run], kinds: dict[str, str] | None = None) -> None:
    """Set the row's value of every column but the baseline ones (those come from its verdict). `kinds`:
    each column's `column_kind` over all_runs, when the caller computed it once for every row."""
    kinds = kinds if kinds is not None else {key: column_kind(key, all_runs) for key in columns}
    for key in columns:
        if key == "name":
            row.values[key] = row.label
        elif key == "n":
            row.values[key] = row.n
        elif key not in BASELINE_COLUMNS:
            row.values[key] = aggregate([run_value(r, key) for r in row.runs], kinds[key])


# ----------------------------------------------------------------------------------------------- baseline
def find_baseline(rows: Sequence[TableRow], spec: str) -> TableRow:
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
    """Accuracies improve upward; losses and times (LOWER_IS_BETTER) downward."""
    return not any(s in metric for s in LOWER_IS_BETTER)


def seed_values(row: TableRow, metric: str) -> dict[Any, float]:
    """Seed → the first head's value of `metric`, for each completed run of the row (seeds are distinct
    within a row: make_rows keeps one run per seed)."""
    out = {}
    for r in row.runs:
        v = first_head(run_value(r, metric)) if r.status == "completed" else None
        if v is not None:
            out[r.config.get("seed", r.name)] = v
    return out


def single_run_test(row: TableRow, base: TableRow, metric: str) -> Outcome | None:
    """McNemar's test on the test set's examples when the row and the baseline are single runs compared on
    test accuracy and both saved their predictions for the same test labels; else None."""
    from ..training.predictions import correct_on_test

    if metric != "test_acc" or len(row.runs) != 1 or len(base.runs) != 1:
        return None
    a, b = correct_on_test(row.runs[0].path), correct_on_test(base.runs[0].path)
    if a is None or b is None or a[0].shape != b[0].shape or not (a[0] == b[0]).all() or not len(a[0]):
        return None
    return mcnemar(a[1].tolist(), b[1].tolist())


def set_verdicts(rows: Sequence[TableRow], base: TableRow, metric: str) -> None:
    """Every row's verdict on `metric` against the baseline row: paired t-test when both hold the same seeds,
    else Welch's (exact permutation tests where there is no spread, McNemar for two single runs), with Holm's
    correction across the table's rows: 'better'/'worse' only when the adjusted p < 0.05."""
    ref = seed_values(base, metric)
    others = [row for row in rows if row is not base]
    found = []
    for row in others:
        v = by_seed(seed_values(row, metric), ref)
        if v.p is None and v.text.startswith("cannot tell"):
            outcome = single_run_test(row, base, metric)
            if outcome is not None:
                v = Verdict(v.delta, outcome.p, "not distinguishable on the test set", outcome.test, outcome.ci)
        found.append(v)
    for row, v in zip(others, judge_table(found, higher_is_better=higher_is_better(metric)), strict=True):
        row.verdict = v
    base.verdict = Verdict(0.0, None, "baseline")


def verdict_method(rows: Sequence[TableRow]) -> str:
    """What the title says about the verdicts: the tests used, the correction, and what p covers."""
    tests = list(dict.fromkeys(r.verdict.test for r in rows if r.verdict and r.verdict.test != "-"))
    runs = [r for row in rows for r in row.runs]
    if runs and all(lookup(r.config, "data.seed") == r.config.get("seed") for r in runs):
        covers = "seed and split variance (each seed its own split)"
    else:
        splits = sorted({str(lookup(r.config, "data.seed")) for r in runs})
        covers = f"seed variance on a fixed split (data.seed={'/'.join(splits)})"
    return f"{', '.join(tests) or 'no test'}; {CORRECTION}-corrected across the rows, p<{ALPHA:g}; p covers {covers}"


def engine_warnings(rows: Sequence[TableRow]) -> list[str]:
    """A warning per seed group whose runs were trained by different engines (alone / side by side) or with
    different thread counts: their numbers agree only up to float rounding, which grows over epochs."""
    out = []
    for row in rows:
        engines = {COLUMNS["engine"].get(r) for r in row.runs} - {None}
        if row.is_group and len(engines) > 1:
            out.append(f"{row.label} mixes engines ({', '.join(sorted(engines))}): identical only up to rounding")
    return out


def verdict_value(v: Verdict | None, key: str) -> Any:
    """A baseline column's value: the delta, its CI, the test, p, Holm's p, the verdict's text or the seeds
    80% power needs (None for a row without a verdict)."""
    if v is None:
        return None
    values = {"delta": v.delta, "ci": list(v.ci) if v.ci else None, "test": v.test, "p": v.p, "p_holm": v.p_adj}
    return {**values, "verdict": v.text, "seeds_80": v.seeds_80}[key]


# ----------------------------------------------------------------------------------------------- order
def sort_key(value: Any) -> tuple:
    """Numbers first (a group by its mean, per-head values by the first head), then text, then no value."""
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


def sort_rows(rows: list[TableRow], key: str, desc: bool = False) -> list[TableRow]:
    """Rows by a column (a group by its mean, per-head values by the first head); rows without a value last."""

    def value(row: TableRow) -> Any:
        if key in BASELINE_COLUMNS:
            return verdict_value(row.verdict, key)
        if key in row.values:
            return row.values[key]
        return aggregate([run_value(r, key) for r in row.runs], "result")

    present = [r for r in rows if sort_key(value(r))[0] < 2]
    missing = [r for r in rows if sort_key(value(r))[0] == 2]
    return sorted(present, key=lambda r: sort_key(value(r)), reverse=desc) + missing
