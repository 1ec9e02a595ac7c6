"""`report`: one folder with report.md and a self-contained report.html built from run directories.

Contents: the comparison table, learning curves, the config keys that differ between rows, the book's
parameter histogram for every run, a grid of sample test predictions per row, a confusion matrix for the
best run, and links to each run's files (only those that exist). Figures that need the model or the data
set (samples, confusion matrix) are skipped with a note when the files are not there; nothing here
raises for a single bad run.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.errors import RegbenchError, RunDirError
from ..core.figures import param_hist
from ..core.values import first_head
from ..resolve import load_config
from ..rundir import CONFIG, LOG, METRICS, MODEL, STEPS, SUMMARY, Run
from ..training.infer import load_model, probabilities
from . import plots
from .aggregation import TableRow, flat_items, group_key
from .columns import CompareError, model_summary, short_text
from .compare import Comparison, compare, plot_curves
from .render import markdown_table

RUN_FILES = (CONFIG, METRICS, SUMMARY, LOG, MODEL, "params_hist.png", STEPS)


# ----------------------------------------------------------------------------------------------- document
@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Para:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class TableBlock:
    headers: list[str]
    rows: list[list[str]]
    numeric: list[bool] = field(default_factory=list)


@dataclass
class Images:
    items: list[tuple[str, str]]  # (file name in the report folder, caption)


@dataclass
class Links:
    items: list[tuple[str, list[tuple[str, str]]]]  # (label, [(text, relative path)])


Block = Heading | Para | Bullets | TableBlock | Images | Links


def _md_target(path: str) -> str:
    return f"<{path}>" if re.search(r"[\s()<>]", path) else path


def to_markdown(blocks: Sequence[Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"{'#' * b.level} {b.text}")
        elif isinstance(b, Para):
            out.append(b.text)
        elif isinstance(b, Bullets):
            out.append("\n".join(f"- {item}" for item in b.items))
        elif isinstance(b, TableBlock):
            out.append(markdown_table(b.headers, b.rows, b.numeric).rstrip("\n"))
        elif isinstance(b, Images):
            out.append("\n".join(f"![{cap}]({_md_target(f)})" for f, cap in b.items))
        elif isinstance(b, Links):
            out.append(
                "\n".join(
                    f"- **{label}**: " + " · ".join(f"[{t}]({_md_target(p)})" for t, p in links)
                    for label, links in b.items
                )
            )
    return "\n\n".join(out) + "\n"


CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 3px 7px; }
th { background: #f0f0f0; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { display: inline-block; margin: 0.4em; vertical-align: top; }
figcaption { font-size: 0.8em; color: #555; } img { max-width: 100%; }
"""


def to_html(blocks: Sequence[Block], folder: Path, title: str) -> str:
    """The same document as HTML with every image embedded (base64), so the file stands alone."""
    e = html.escape
    out = [
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{e(title)}</title><style>{CSS}</style></head><body>"
    ]
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"<h{b.level}>{e(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            out.append("<p>" + re.sub(r"`([^`]+)`", r"<code>\1</code>", e(b.text)) + "</p>")
        elif isinstance(b, Bullets):
            out.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, TableBlock):
            num = b.numeric or [False] * len(b.headers)
            rows = "".join(
                "<tr>"
                + "".join(f"<td{' class=num' if n else ''}>{e(c)}</td>" for c, n in zip(row, num, strict=False))
                + "</tr>"
                for row in b.rows
            )
            out.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in b.headers) + f"</tr>{rows}</table>")
        elif isinstance(b, Images):
            for f, cap in b.items:
                data = base64.b64encode((folder / f).read_bytes()).decode()
                out.append(
                    f"<figure><img src='data:image/png;base64,{data}' alt='{e(cap, quote=True)}'>"
                    f"<figcaption>{e(cap)}</figcaption></figure>"
                )
        elif isinstance(b, Links):
            items = "".join(
                f"<li><b>{e(label)}</b>: "
                + " · ".join(f"<a href='{e(p, quote=True)}'>{e(t)}</a>" for t, p in links)
                + "</li>"
                for label, links in b.items
            )
            out.append(f"<ul>{items}</ul>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------------------------- models and data
def model_and_config(run: Run):
    """A run's trained model (the last epoch's weights, evaluation mode, CPU) and its resolved config."""
    return load_model(run, MODEL), load_config(run.config)


class DataCache:
    """Test splits loaded once per distinct data config (runs differing only in seed share one)."""

    def __init__(self) -> None:
        self._sets: dict[str, Any] = {}

    def test_split(self, cfg) -> tuple[torch.Tensor, torch.Tensor]:
        from ..data import load_data

        key = json.dumps(cfg.data.__dict__, default=str, sort_keys=True)
        if key not in self._sets:
            try:
                ds = load_data(cfg.data)
                self._sets[key] = (ds.x["test"], ds.y["test"])
            except RegbenchError as e:
                self._sets[key] = e
        got = self._sets[key]
        if isinstance(got, Exception):
            raise got
        return got


def weight_values(net) -> np.ndarray:
    from ..nn.model import weights_and_kernels

    return torch.cat([w.detach().reshape(-1).double() for w in weights_and_kernels(net)]).numpy()


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:80] or "run"


# ----------------------------------------------------------------------------------------------- sections
@dataclass
class ReportResult:
    md: Path
    html: Path
    figures: list[Path]
    notes: list[str]  # figures that were skipped, and why
    warnings: list[str]  # paths that were not runs


def config_differences(rows: Sequence[TableRow]) -> TableBlock | None:
    """A table of the resolved-config keys whose values differ between rows (seeds within a group excluded)."""
    if len(rows) < 2:
        return None
    flats = []
    for row in rows:
        flat = dict(flat_items(json.loads(group_key(row.runs[0]))))
        if "model.layers" in flat:
            flat["model.layers"] = model_summary(row.runs[0].config)
        flats.append(flat)
    keys = sorted({k for f in flats for k in f}, key=lambda k: (k.split(".")[0] != "name", k))
    differ = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True, default=str) for f in flats}) > 1]
    seeds = [",".join(str(r.config.get("seed", "?")) for r in row.runs) for row in rows]
    if not differ:
        return None
    body = [[row.label, *(_cell(f.get(k)) for k in differ), s] for row, f, s in zip(rows, flats, seeds, strict=True)]
    return TableBlock(["row", *differ, "seed"], body)


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    return v if isinstance(v, str) else short_text(v) if not isinstance(v, float) else f"{v:g}"


def write_report(
    paths: Sequence[str | Path],
    out: str | Path = "report",
    *,
    where: Sequence[str] = (),
    baseline: str | None = None,
    metric: str = "test_acc",
    sort: str | None = None,
    desc: bool = False,
    columns: Sequence[str] | str | None = None,
    samples: int = 8,
) -> ReportResult:
    """Write `out/report.md`, `out/report.html` and their PNGs for the runs in (or under) `paths`.

    The table options are those of `compare`. `samples` test images are shown per row (the same images
    for every row on the same data set). Raises CompareError when no run is found or an option is bad,
    RunDirError when `out` cannot be written; a run without a model or data only loses its figures.
    """
    comp = compare(paths, where=where, baseline=baseline, metric=metric, sort=sort, desc=desc, columns=columns)
    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"{folder}: cannot create the report folder ({e.strerror or e})") from None
    notes: list[str] = []
    figures: list[Path] = []
    blocks: list[Block] = [
        Heading(1, "regbench report"),
        Para(f"{comp.title()}. Written {time.strftime('%Y-%m-%d %H:%M')} by `regbench report`."),
    ]
    if comp.warnings:
        blocks += [Para("Paths that were not read:"), Bullets(comp.warnings)]

    blocks += [Heading(2, "Comparison"), _table(comp)]
    blocks += _legend(comp)

    def figure(name: str, draw) -> str | None:
        try:
            figures.append(draw(folder / name))
            return name
        except Exception as e:  # a figure never stops the report; the note says what is missing
            notes.append(f"{name}: skipped ({e.__class__.__name__}: {' '.join(str(e).split())})")
            return None

    # learning curves
    blocks.append(Heading(2, "Learning curves"))
    if any(r.metrics for r in comp.runs):
        name = figure("curves.png", lambda f: plot_curves(comp, f))
        blocks.append(Images([(name, "learning curves (mean ± std over seeds for groups)")]) if name else Para("-"))
    else:
        blocks.append(Para("No run has per-epoch metrics yet."))

    # config differences
    blocks.append(Heading(2, "Config differences"))
    diff = config_differences(comp.rows)
    blocks.append(
        diff or Para("The rows share one resolved config apart from the seed." if len(comp.rows) > 1 else "One row.")
    )

    # models: histograms, samples, confusion
    models: dict[Path, Any] = {}

    def model_of(run: Run):
        if run.path not in models:
            try:
                models[run.path] = model_and_config(run)
            except Exception as e:
                models[run.path] = e
        got = models[run.path]
        if isinstance(got, Exception):
            raise got
        return got

    blocks.append(Heading(2, "Parameter distributions"))
    blocks.append(
        Para("The book's show_param_dist: weights and kernels (no biases), 100 bins, density, with mu and sigma.")
    )
    for row in comp.rows:
        items = []
        for run in row.runs:
            name = figure(
                f"hist-{slug(run.name)}.png",
                lambda f, run=run: param_hist(weight_values(model_of(run)[0]), f, title=run.name),
            )
            if name:
                items.append((name, f"{run.name} (seed {run.config.get('seed', '?')})"))
        blocks += [Heading(3, row.label), Images(items) if items else Para("No model saved (see notes).")]

    cache = DataCache()
    if samples > 0:
        blocks.append(Heading(2, "Sample test predictions"))
        blocks.append(
            Para(
                "The same test images for every row on one data set; bars: estimated probabilities "
                "(the estimate green when right, red when wrong; the answer outlined); `estimate : answer O/X`."
            )
        )
        for row in comp.rows:
            run = row.runs[0]
            name = figure(
                f"samples-{slug(row.label)}.png",
                lambda f, run=run, row=row: _samples(run, row, cache, samples, model_of, f),
            )
            caption = f"{row.label}: {run.name}" + (" (first seed of the group)" if row.is_group else "")
            blocks += [
                Heading(3, row.label),
                Images([(name, caption)]) if name else Para("Skipped (see notes)."),
            ]

    best = _best_run(comp)
    blocks.append(Heading(2, "Confusion matrix of the best run"))
    if best is None:
        blocks.append(Para("No completed run with a test accuracy."))
    else:
        name = figure(f"confusion-{slug(best.name)}.png", lambda f: _confusion(best, cache, model_of, f))
        acc = first_head(best.summary.get("test_acc"))
        caption = f"{best.name}: best test accuracy {acc:.3f} (first head)"
        blocks.append(Images([(name, caption)]) if name else Para("Skipped (see notes)."))

    blocks += [Heading(2, "Runs"), _run_links(comp, folder)]
    if notes:
        blocks += [Heading(2, "Notes"), Bullets(notes)]

    md, page = folder / "report.md", folder / "report.html"
    try:
        md.write_text(to_markdown(blocks), encoding="utf-8")
        page.write_text(to_html(blocks, folder, "regbench report"), encoding="utf-8")
    except OSError as e:
        raise RunDirError(f"{folder}: cannot write the report ({e.strerror or e})") from None
    return ReportResult(md, page, figures, notes, comp.warnings)


def _table(comp: Comparison) -> TableBlock:
    return TableBlock(
        [comp.header(k) for k in comp.columns], comp.table_rows(), [comp.numeric(k) for k in comp.columns]
    )


def _legend(comp: Comparison) -> list[Block]:
    lines = [
        "test acc: per head joined by + (e.g. 0.874+0.558); best val @epoch: first head; "
        "train−val: final train accuracy minus final validation accuracy; near 0 %: weights with |w| ≤ 1e-5; "
        "w mean / w std: weights and kernels; train s/member: the pass's training wall time divided among the runs "
        "trained side by side in it (engine: alone or ×K, with CPU threads); notes: BN averages N% initial = "
        "batch_normal running averages still hold N% of their initial values (exp_ratio × steps too small)."
    ]
    if any(row.is_group for row in comp.rows):
        lines.append(
            "Rows with n > 1 are seed groups (configs equal apart from the seed): mean±std (sample std) over n runs."
        )
    if comp.baseline:
        lines.append(
            f"Δ and verdict: {comp.metric} (first head) against {comp.baseline.label}; the paired t-test when both "
            "rows hold the same seeds, else Welch's (exact permutation or sign-flip tests where there is no spread; "
            "McNemar on the test set's examples for two single runs: test-set noise only); 95% CI of Δ; "
            "'better'/'worse' when p after Holm's correction across the rows is < 0.05; 'seeds for 80%': seeds per "
            "group that would resolve Δ at 80% power. p covers seed variance on a fixed split (data.seed)."
        )
    return [Para(" ".join(lines))]


def _best_run(comp: Comparison) -> Run | None:
    done = [(first_head(r.summary.get("test_acc")), r) for r in comp.runs if r.status == "completed"]
    done = [(a, r) for a, r in done if a is not None]
    return max(done, key=lambda t: t[0])[1] if done else None


def _samples(run: Run, row: TableRow, cache: DataCache, count: int, model_of, file: Path) -> Path:
    net, cfg = model_of(run)
    x, y = cache.test_split(cfg)
    if x.shape[0] == 0:
        raise CompareError("the test split is empty")
    g = torch.Generator().manual_seed(cfg.data.seed)  # the data seed: every row on this data set shows the same images
    pick = torch.randperm(x.shape[0], generator=g)[:count]
    probs = probabilities(net, x[pick])
    heads = [
        plots.HeadPredictions(h["name"], list(h["classes"]), p.numpy(), y[pick, i].numpy())
        for i, (h, p) in enumerate(zip(run.summary["heads"], probs, strict=True))
    ]
    return plots.sample_grid(x[pick].numpy(), heads, file, title=f"{row.label} ({run.name})")


def _confusion(run: Run, cache: DataCache, model_of, file: Path) -> Path:
    net, cfg = model_of(run)
    x, y = cache.test_split(cfg)
    probs = probabilities(net, x)
    mats, heads = [], []
    for i, (h, p) in enumerate(zip(run.summary["heads"], probs, strict=True)):
        k = len(h["classes"])
        m = np.zeros((k, k), dtype=np.int64)
        np.add.at(m, (y[:, i].numpy(), p.argmax(1).numpy()), 1)
        mats.append(m)
        heads.append((h["name"], list(h["classes"])))
    return plots.confusion(mats, heads, file, title=f"{run.name} (test split, {int(x.shape[0])} samples)")


def _run_links(comp: Comparison, folder: Path) -> Links:
    items = []
    for row in comp.rows:
        for run in row.runs:
            links = [(f, os.path.relpath(run.path / f, folder)) for f in RUN_FILES if (run.path / f).is_file()]
            items.append((f"{run.name} ({run.status})", links))
    return Links(items)
