"""Side-by-side comparison of run directories: `compare(paths)` and its result, `Comparison`.

`compare(paths)` reads every run directory under `paths` (a directory of runs is searched recursively),
keeps the runs that match `--where`, groups completed runs whose resolved configs differ only by `seed`
into one row (numeric results become mean ± std over the seeds), optionally tests each row against a
baseline row, and returns a `Comparison` whose `.rows` and `.columns` render as a Rich table, CSV,
Markdown or JSON, or as a pandas DataFrame. It only reads run directories; it never writes into them.

The parts: columns.py (columns, keys, cells), selection.py (finding runs, --where), aggregation.py (seed
groups, baseline verdicts, order), render.py (output forms).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..rundir import Run
from .aggregation import (
    TableRow,
    engine_warnings,
    fill,
    find_baseline,
    make_rows,
    set_verdicts,
    sort_rows,
    verdict_method,
)
from .columns import (
    BASELINE_COLUMNS,
    BASELINE_HEADERS,
    COLUMNS,
    DEFAULT_COLUMNS,
    CompareError,
    KeyIndex,
    cell_text,
    column_kind,
    is_numeric,
)
from .render import FORMATS, baseline_text, csv_text, flat_records, markdown_table, record, rich_table
from .selection import collect_runs, parse_where, read_steps

# the names other modules import from here
__all__ = ["COLUMNS", "FORMATS", "CompareError", "Comparison", "compare", "csv_text", "plot_curves"]


@dataclass
class Comparison:
    """The result of `compare`: rows, the columns shown, warnings about skipped paths, the baseline."""

    rows: list[TableRow]
    columns: list[str]
    warnings: list[str] = field(default_factory=list)
    baseline: TableRow | None = None
    metric: str = "test_acc"

    @property
    def runs(self) -> list[Run]:
        return [r for row in self.rows for r in row.runs]

    def header(self, key: str) -> str:
        """A column's header (`test acc`; `Δ test acc` for the delta)."""
        if key == "delta":
            return f"Δ {COLUMNS[self.metric].header if self.metric in COLUMNS else self.metric}"
        return COLUMNS[key].header if key in COLUMNS else BASELINE_HEADERS.get(key, key)

    def text(self, row: TableRow, key: str) -> str:
        """A cell as the table and Markdown show it."""
        if key in BASELINE_COLUMNS:
            return baseline_text(row.verdict, key)
        return cell_text(key, row.values.get(key))

    def table_rows(self) -> list[list[str]]:
        """Every row as display text, in column order (what the table and Markdown show)."""
        return [[self.text(row, k) for k in self.columns] for row in self.rows]

    def numeric(self, key: str) -> bool:
        """Whether a column holds numbers (right-aligned)."""
        return is_numeric(key)

    def title(self) -> str:
        groups = sum(1 for row in self.rows if row.is_group)
        text = f"{len(self.runs)} runs in {len(self.rows)} rows"
        if groups:
            text += f" ({groups} seed groups: mean±std over n seeds)"
        if self.baseline:
            text += f"; baseline {self.baseline.label}, verdict on {self.metric} ({verdict_method(self.rows)})"
        return text

    # -- machine-readable forms
    def record(self, row: TableRow) -> dict[str, Any]:
        """A row as JSON-ready data: numbers stay numbers; a Stat is {mean, std, n, values}."""
        return record(row, self.columns)

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
        return flat_records(self.rows, self.columns)

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
        headers = [self.header(k) for k in self.columns]
        return markdown_table(headers, self.table_rows(), [is_numeric(k) for k in self.columns])

    def to_latex(self) -> str:
        """A booktabs `tabular` (mean $\\pm$ std, n, Δ, p, verdict; names escaped); significant rows are starred."""
        from .latex import latex_table

        marked = [i for i, row in enumerate(self.rows) if row.verdict and row.verdict.text in ("better", "worse")]
        col = self.columns.index(self.metric) if self.metric in self.columns else None
        headers = [self.header(k) for k in self.columns]
        numeric = [is_numeric(k) for k in self.columns]
        return latex_table(self.title(), headers, self.table_rows(), numeric, marked, col)

    def to_rich(self, width: int | None = None):
        """A Rich table. With `width`, optional columns are hidden (named in the caption) until it fits, rather
        than squeezing every column to a few characters."""
        headers = [self.header(k) for k in self.columns]
        return rich_table(self.title(), self.columns, headers, self.rows, self.table_rows(), width, keep=[self.metric])

    def render(self, fmt: str) -> str:
        """The table as text: `csv`, `markdown`, `json`, or `table` (Rich's rendering, 200 characters wide)."""
        if fmt == "csv":
            return self.to_csv()
        if fmt == "markdown":
            return self.to_markdown()
        if fmt == "json":
            return self.to_json() + "\n"
        if fmt == "latex":
            return self.to_latex()
        if fmt == "table":
            from rich.console import Console

            console = Console(width=200, record=True, file=io.StringIO())
            console.print(self.to_rich(200))
            return console.export_text()
        raise CompareError(f"--format: expected one of {', '.join(FORMATS)}, latex, got {fmt!r}")


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
    smoke: bool = False,
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
        smoke: also show rehearsal runs (`suite --smoke`, marked `smoke` in summary.json); left out otherwise.

    Raises CompareError when no run is found or a key, condition or baseline is unknown.
    """
    paths = list(paths)
    runs, warnings = collect_runs(paths)
    rehearsals = [r for r in runs if r.summary.get("smoke")]
    if rehearsals and not smoke:
        runs = [r for r in runs if not r.summary.get("smoke")]
        warnings.append(f"left out {len(rehearsals)} smoke run(s) of `suite --smoke` (--smoke shows them)")
    if not runs:
        where_text = ", ".join(str(p) for p in paths) or "(no paths given)"
        detail = f" ({'; '.join(warnings)})" if warnings and len(warnings) <= 3 else ""
        raise CompareError(f"no run directories found in {where_text}{detail}")
    keys = KeyIndex(runs)  # every run's keys, read once for all the checks below
    conditions = parse_where(where, runs, keys)
    if isinstance(columns, str):
        columns = [c.strip() for c in columns.split(",") if c.strip()]
    cols = list(columns) if columns else list(DEFAULT_COLUMNS)
    for key in cols:
        keys.check(key, "--columns")
    if "name" not in cols:
        cols.insert(0, "name")
    metric = keys.check(metric, "--metric")
    sort_desc = desc
    if sort and sort.startswith("-"):
        sort, sort_desc = sort[1:], not desc
    if sort:
        keys.check(sort, "--sort")

    kept = [r for r in runs if all(c.matches(r) for c in conditions)]
    if conditions and not kept:
        warnings.append(f"no run matches --where {' and '.join(c.text for c in conditions)}")
    rows = make_rows(sorted(kept, key=lambda r: str(r.path)), group=group, warnings=warnings)
    warnings += engine_warnings(rows)
    kinds = {key: column_kind(key, runs) for key in cols}  # once per column, not per row
    for row in rows:
        fill(row, cols, runs, kinds)

    base = None
    if baseline:
        base = find_baseline(rows, baseline)
        set_verdicts(rows, base, metric)
        cols += [c for c in BASELINE_COLUMNS if c not in cols]

    if sort:
        rows = sort_rows(rows, sort, sort_desc)
    comp = Comparison(rows, cols, warnings, base, metric)
    if plot:
        plot_curves(comp, plot)
    return comp


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
