"""`compare --diff A B`: the resolved-config keys that differ between two runs or two seed groups.

Keys are dotted paths as `--set` and `--columns` write them, down to nested layer parameters
(`model.layers[2].keep_prob`; a layer's type is the key of its entry, `model.layers[2]`). A seed group
compares through its first run, with the seeds of each side as the `seed` key.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import is_layer_entry
from .aggregation import TableRow, find_baseline, make_rows
from .columns import CompareError
from .render import csv_text, markdown_table
from .selection import collect_runs

ABSENT = "(absent)"


def flat_config(node: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf of a resolved config as `{dotted key: value}`; layer entries open into their parameters."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(flat_config(v, f"{prefix}.{k}" if prefix else str(k)))
        return out or {prefix: {}}
    if is_layer_entry(node):
        out = {prefix: node[0]}
        if len(node) == 2:
            params = node[1]
            out.update(flat_config(params, prefix) if isinstance(params, dict) else flat_config(params, f"{prefix}[1]"))
            out[prefix] = node[0]
        return out
    if isinstance(node, list) and any(isinstance(x, (dict, list)) for x in node):
        out = {}
        for i, v in enumerate(node):
            out.update(flat_config(v, f"{prefix}[{i}]"))
        return out or {prefix: []}
    return {prefix: node}


def text(v: Any) -> str:
    if isinstance(v, str):
        return v
    return json.dumps(v, ensure_ascii=False, default=str)


@dataclass
class ConfigDiff:
    """The keys whose values differ between side `a` and side `b` (labels as compare shows the rows)."""

    a: str
    b: str
    keys: list[tuple[str, Any, Any]]  # (key, value in a or ABSENT, value in b or ABSENT)

    def cells(self) -> list[list[str]]:
        return [[k, text(va), text(vb)] for k, va, vb in self.keys]

    def render(self, fmt: str) -> str:
        """`table` (plain aligned text), `markdown`, `csv` or `json`."""
        headers = ["key", self.a, self.b]
        if fmt == "json":
            rows = [{"key": k, "a": va, "b": vb} for k, va, vb in self.keys]
            return json.dumps({"a": self.a, "b": self.b, "differences": rows}, indent=2, ensure_ascii=False) + "\n"
        if fmt == "csv":
            return csv_text([dict(zip(headers, c, strict=True)) for c in self.cells()], headers)
        if fmt == "markdown":
            return markdown_table(headers, self.cells())
        if fmt == "table":
            if not self.keys:
                return f"{self.a} and {self.b}: the resolved configs are equal\n"
            rows = [headers, *self.cells()]
            widths = [max(len(r[i]) for r in rows) for i in range(3)]
            lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
            lines.insert(1, "  ".join("-" * w for w in widths))
            return "\n".join(lines) + "\n"
        raise CompareError(f"--format: expected table, markdown, csv or json with --diff, got {fmt!r}")


def side(row: TableRow) -> dict[str, Any]:
    """A row's resolved config, flattened; a seed group's `seed` is the list of its seeds."""
    flat = flat_config(row.runs[0].config)
    if len(row.runs) > 1:
        flat["seed"] = [r.config.get("seed") for r in row.runs]
    return flat


def diff_rows(a: TableRow, b: TableRow) -> ConfigDiff:
    """The differing keys of two rows, in the order of the config file (a's keys first)."""
    fa, fb = side(a), side(b)
    keys = list(dict.fromkeys([*fa, *fb]))
    out = [(k, fa.get(k, ABSENT), fb.get(k, ABSENT)) for k in keys if k not in fa or k not in fb or fa[k] != fb[k]]
    return ConfigDiff(a.label, b.label, out)


def config_diff(paths: Iterable[str | Path], a: str, b: str, *, group: bool = True, smoke: bool = False) -> ConfigDiff:
    """The config keys that differ between `a` and `b`: each a row label (a seed group), a run directory
    (path or name) or a config name among the runs in (or under) `paths` (with no paths: `a` and `b`
    themselves). Raises CompareError when either is not found."""
    paths = list(paths) or [a, b]
    runs, _ = collect_runs(paths)
    if not smoke:
        runs = [r for r in runs if not r.summary.get("smoke")]
    if not runs:
        raise CompareError(f"--diff: no run directories found in {', '.join(str(p) for p in paths)}")
    rows = make_rows(sorted(runs, key=lambda r: str(r.path)), group=group)
    ra, rb = _find(rows, a), _find(rows, b)
    if ra is rb and group:  # two runs of one seed group: compare the runs themselves
        rows = make_rows(sorted(runs, key=lambda r: str(r.path)), group=False)
        ra, rb = _find(rows, a), _find(rows, b)
    return diff_rows(ra, rb)


def _find(rows: Sequence[TableRow], spec: str) -> TableRow:
    try:
        return find_baseline(rows, spec)
    except CompareError as e:
        raise CompareError(str(e).replace("--baseline", "--diff", 1)) from None
