"""compare's output forms: rows as JSON-ready records, flat records for CSV and pandas, a Markdown table
and a Rich table. Functions of the rows and columns, so `Comparison` (compare.py) only dispatches."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from typing import Any

from ..core.stats import Stat, Verdict
from .aggregation import TableRow, verdict_value
from .columns import BASELINE_COLUMNS, HIDE_ORDER, LAST_HIDDEN, NEVER_HIDDEN, is_numeric

FORMATS = ("table", "csv", "markdown", "json")
STATUS_STYLES = {"running": "yellow", "interrupted": "yellow", "failed": "red", "diverged": "red"}
VERDICT_COLORS = {"better": "green", "worse": "red", "baseline": "bold"}


# ----------------------------------------------------------------------------------------------- values
def num(v: Any) -> float | None:
    """A number for JSON and CSV: NaN (e.g. the delta of a row without runs) becomes None."""
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def scalar(v: Any) -> Any:
    """A CSV cell: a mapping or list becomes its JSON text."""
    if isinstance(v, (dict, list)):
        return json.dumps(v, default=str, ensure_ascii=False)
    return v


def jsonable(v: Any) -> Any:
    """A cell as JSON data: a Stat becomes {mean, std, n, values}; NaN and infinities become None."""
    if isinstance(v, Stat):
        return v.to_dict()
    if isinstance(v, list):
        return [jsonable(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def baseline_value(v: Verdict | None, key: str) -> Any:
    """A baseline column's value in JSON and CSV (NaN delta → None)."""
    value = verdict_value(v, key)
    return num(value) if key == "delta" else value


def baseline_text(v: Verdict | None, key: str) -> str:
    """A baseline column's cell in the table: `+0.012`, `0.031` / `<0.001`, or the verdict."""
    if v is None:
        return ""
    if key == "delta":
        return "-" if math.isnan(v.delta) else f"{v.delta:+.3f}"
    if key in ("p", "p_holm"):
        p = v.p if key == "p" else v.p_adj
        return "-" if p is None else (f"{p:.3f}" if p >= 0.001 else "<0.001")
    if key == "ci":
        return "-" if v.ci is None else f"[{v.ci[0]:+.3f}, {v.ci[1]:+.3f}]"
    if key == "seeds_80":
        return "-" if v.seeds_80 is None else str(v.seeds_80)
    return v.text if key == "verdict" else v.test


# ----------------------------------------------------------------------------------------------- records
def record(row: TableRow, columns: Sequence[str]) -> dict[str, Any]:
    """A row as JSON-ready data: numbers stay numbers; a Stat is {mean, std, n, values}; plus its run paths."""
    out: dict[str, Any] = {}
    for key in columns:
        out[key] = baseline_value(row.verdict, key) if key in BASELINE_COLUMNS else jsonable(row.values.get(key))
    out["runs"] = [str(r.path) for r in row.runs]
    return out


def flat_records(rows: Sequence[TableRow], columns: Sequence[str]) -> list[dict[str, Any]]:
    """One flat dict per row for CSV and pandas: a group's column gives `col` (mean) and `col_std`; a
    per-head column gives `col[1]`, `col[2]`…"""
    heads: dict[str, int] = {}
    grouped: set[str] = set()
    for row in rows:
        for key in columns:
            v = row.values.get(key)
            if isinstance(v, list) and v and all(isinstance(x, (Stat, int, float)) for x in v):
                heads[key] = max(heads.get(key, 1), len(v))
                if any(isinstance(x, Stat) for x in v):
                    grouped.add(key)
            if isinstance(v, Stat):
                grouped.add(key)
    records = []
    for row in rows:
        rec: dict[str, Any] = {}
        for key in columns:
            if key in BASELINE_COLUMNS:
                rec[key] = baseline_value(row.verdict, key)
                continue
            v = row.values.get(key)
            if key in heads:
                items = v if isinstance(v, list) else [v] if v is not None else []
                for h in range(heads[key]):
                    x = items[h] if h < len(items) else None
                    rec[f"{key}[{h + 1}]"] = x.mean if isinstance(x, Stat) else num(x)
                    if key in grouped:
                        rec[f"{key}[{h + 1}]_std"] = x.std if isinstance(x, Stat) else None
                continue
            rec[key] = v.mean if isinstance(v, Stat) else scalar(v)
            if key in grouped:
                rec[f"{key}_std"] = v.std if isinstance(v, Stat) else None
        records.append(rec)
    return records


def csv_text(records: list[dict[str, Any]], fields: list[str] | None = None) -> str:
    """Records as CSV: the union of their keys as the header (`fields` when there are none), None as ''."""
    buf = io.StringIO()
    keys = list(dict.fromkeys(k for rec in records for k in rec)) or fields or []
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for rec in records:
        w.writerow({k: "" if v is None else v for k, v in rec.items()})
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------- tables
def markdown_table(headers: Sequence[str], cells: Sequence[Sequence[str]], numeric: Sequence[bool] = ()) -> str:
    """A Markdown table (numeric columns right-aligned), ending in a newline."""

    def esc(s: str) -> str:
        return s.replace("|", "\\|").replace("\n", " ")

    align = list(numeric) or [False] * len(headers)
    lines = [
        "| " + " | ".join(esc(h) for h in headers) + " |",
        "|" + "|".join("---:" if n else "---" for n in align) + "|",
    ]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in cells]
    return "\n".join(lines) + "\n"


def rich_table(
    title: str,
    columns: Sequence[str],
    headers: Sequence[str],
    rows: Sequence[TableRow],
    cells_by_row: Sequence[Sequence[str]],
    width: int | None = None,
    keep: Sequence[str] = (),
):
    """A Rich table of the rows' cells. With `width`, the least important columns are hidden, and named in
    the caption, until it fits, rather than squeezing every column to a few characters: HIDE_ORDER, then
    the other columns from the right, then LAST_HIDDEN; never NEVER_HIDDEN or `keep` (the verdict's metric)."""
    from rich.markup import escape
    from rich.table import Table

    cols = list(range(len(columns)))
    hidden: list[str] = []
    if width:
        need = {i: column_width(columns[i], headers[i], [c[i] for c in cells_by_row]) for i in cols}
        protected = {*NEVER_HIDDEN, *keep}
        others = [k for k in reversed(columns) if k not in (*HIDE_ORDER, *LAST_HIDDEN, *protected)]
        for key in (*HIDE_ORDER, *others, *LAST_HIDDEN):
            if sum(need[i] for i in cols) + 1 <= width:
                break
            if key in protected:
                continue
            if key in columns and columns.index(key) in cols:
                cols.remove(columns.index(key))
                hidden.append(key)
    table = Table(title=title, title_justify="left")
    if hidden:
        table.caption = f"hidden to fit {width} columns: {', '.join(hidden)} (see --columns, --format markdown)"
        table.caption_justify = "left"
    for i in cols:
        key = columns[i]
        table.add_column(
            headers[i],
            justify="right" if is_numeric(key) else "left",
            overflow="fold",
            no_wrap=is_numeric(key) or key in ("status", "verdict"),
        )
    for row, cells in zip(rows, cells_by_row, strict=True):
        status = str(row.values.get("status", row.runs[0].status))
        shown = []
        for i in cols:
            text = escape(cells[i])
            if columns[i] == "verdict" and row.verdict:
                color = VERDICT_COLORS.get(row.verdict.text)
                text = f"[{color}]{text}[/]" if color else text
            shown.append(text)
        table.add_row(*shown, style=STATUS_STYLES.get(status, "" if status == "completed" else "dim"))
    return table


def column_width(key: str, header: str, cells: Sequence[str]) -> int:
    """Characters a column needs (cell, padding, border); the model summary and name may fold onto two lines."""
    longest = max([len(header), *(len(c) for c in cells)])
    if key in ("model", "name"):
        longest = min(longest, 28)
    return longest + 3
