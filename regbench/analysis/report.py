"""`report`: one folder with report.md and a self-contained report.html built from run directories.

Contents: the comparison table, learning curves, the config keys that differ between rows, the book's
parameter histogram for every run, a grid of sample test predictions per row, a confusion matrix for the
best run, and links to each run's files (only those that exist). Figures that need the model or the data
set (samples, confusion matrix) are skipped with a note when the files are not there; nothing here
raises for a single bad run.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.errors import RegbenchError, RunDirError
from ..core.figures import param_hist
from ..core.values import first_head
from ..rundir import CONFIG, LOG, METRICS, MODEL, STEPS, SUMMARY, Run
from . import plots
from .aggregation import TableRow, flat_items, group_key
from .columns import BASELINE_COLUMNS, CompareError, model_summary, short_text
from .compare import Comparison, compare, plot_curves
from .document import Block, Bullets, Heading, Images, Links, Para, TableBlock, to_html, to_markdown
from .report_text import LANGS, runs_lang, summary_line, texts

if TYPE_CHECKING:
    import torch

# torch (models, data, the resolved config) is imported by the figures that need a trained model, so a report
# of tables and learning curves starts without it

RUN_FILES = (CONFIG, METRICS, SUMMARY, LOG, MODEL, "curves.png", "params_hist.png", STEPS)
FIGURE_FORMATS = ("png", "svg")
SPLIT_AT = 16  # a comparison table wider than this many columns is printed as two (both fit an A4 landscape page)
MODEL_CELL = 28  # characters of the layer list shown in the table; longer ones get a key and a note under it


# ----------------------------------------------------------------------------------------------- models and data
def model_and_config(run: Run):
    """A run's trained model (the last epoch's weights, evaluation mode, CPU) and its resolved config."""
    from ..resolve import load_config
    from ..training.infer import load_model

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
    import torch

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
    lang: str | None = None,
    figures: str = "png",
    smoke: bool = False,
) -> ReportResult:
    """Write `out/report.md`, `out/report.html` and their figures for the runs in (or under) `paths`.

    The table options are those of `compare`. `samples` test images are shown per row (the same images
    for every row on the same data set). `lang` (`ko` or `en`; None: the language most runs were trained
    in) sets the report's words; `figures` is `png` or `svg` (sharp in LaTeX and Word documents). Raises
    CompareError when no run is found or an option is bad, RunDirError when `out` cannot be written; a run
    without a model or data only loses its figures.
    """
    if lang is not None and lang not in LANGS:
        raise CompareError(f"--lang: expected one of {', '.join(LANGS)}, got {lang!r}")
    if figures not in FIGURE_FORMATS:
        raise CompareError(f"--figures: expected one of {', '.join(FIGURE_FORMATS)}, got {figures!r}")
    comp = compare(
        paths, where=where, baseline=baseline, metric=metric, sort=sort, desc=desc, columns=columns, smoke=smoke
    )
    lang = lang or runs_lang(comp.runs)
    t = texts(lang)
    ext = figures
    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"{folder}: cannot create the report folder ({e.strerror or e})") from None
    notes: list[str] = []
    drawn: list[Path] = []
    blocks: list[Block] = [
        Heading(1, t["title"]),
        Para(t["written"].format(what=summary_line(comp, t), when=time.strftime("%Y-%m-%d %H:%M"))),
    ]
    if comp.warnings:
        blocks += [Para(t["not_read"]), Bullets(comp.warnings)]

    blocks += [Heading(2, t["comparison"]), *split_table(compact_table(comp), comp)]
    blocks += _legend(comp, t)

    def figure(name: str, draw) -> str | None:
        try:
            drawn.append(draw(folder / name))
            return name
        except Exception as e:  # a figure never stops the report; the note says what is missing
            notes.append(f"{name}: skipped ({e.__class__.__name__}: {' '.join(str(e).split())})")
            return None

    # learning curves
    blocks.append(Heading(2, t["curves"]))
    if any(r.metrics for r in comp.runs):
        name = figure(f"curves.{ext}", lambda f: plot_curves(comp, f))
        blocks.append(Images([(name, t["curves_cap"])]) if name else Para("-"))
    else:
        blocks.append(Para(t["no_metrics"]))

    # config differences
    blocks.append(Heading(2, t["diffs"]))
    diff = config_differences(comp.rows)
    blocks.append(diff or Para(t["same_config"] if len(comp.rows) > 1 else t["one_row"]))

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

    blocks += [Heading(2, t["hists"]), Para(t["hists_para"])]
    for row in comp.rows:
        items = []
        for run in row.runs:  # the caption names the run; the figure itself carries no title
            name = figure(
                f"hist-{slug(run.name)}.{ext}",
                lambda f, run=run: param_hist(weight_values(model_of(run)[0]), f),
            )
            if name:
                items.append((name, f"{run.name} ({t['seed'].format(seed=run.config.get('seed', '?'))})"))
        blocks += [Heading(3, row.label), Images(items, small=True) if items else Para(t["no_model"])]

    cache = DataCache()
    if samples > 0:
        blocks += [Heading(2, t["samples"]), Para(t["samples_para"])]
        for row in comp.rows:
            run = row.runs[0]
            name = figure(
                f"samples-{slug(row.label)}.{ext}",
                lambda f, run=run: _samples(run, cache, samples, model_of, f),
            )
            caption = run.name + (t["first_seed"] if row.is_group else "")
            blocks += [Heading(3, row.label), Images([(name, caption)]) if name else Para(t["skipped"])]

    best = _best_run(comp)
    blocks.append(Heading(2, t["confusion"]))
    if best is None:
        blocks.append(Para(t["no_best"]))
    else:
        name = figure(f"confusion-{slug(best.name)}.{ext}", lambda f: _confusion(best, cache, model_of, f))
        acc = first_head(best.summary.get("test_acc"))
        n = best.summary.get("data", {}).get("test", "?")
        caption = t["confusion_cap"].format(name=best.name, acc=acc, n=n)
        blocks.append(Images([(name, caption)]) if name else Para(t["skipped"]))

    blocks += [Heading(2, t["runs"]), _run_links(comp, folder)]
    prov = provenance_table(comp.runs)
    if prov:
        blocks += [Heading(2, t["provenance"]), prov]
    if notes:
        blocks += [Heading(2, t["notes"]), Bullets(notes)]

    md, page = folder / "report.md", folder / "report.html"
    try:
        md.write_text(to_markdown(blocks), encoding="utf-8")
        page.write_text(to_html(blocks, folder, t["title"], lang), encoding="utf-8")
    except OSError as e:
        raise RunDirError(f"{folder}: cannot write the report ({e.strerror or e})") from None
    return ReportResult(md, page, drawn, notes, comp.warnings)


def compact_table(comp: Comparison) -> TableBlock:
    """The comparison table with a compact model column: a layer list longer than MODEL_CELL characters is
    cut at a layer boundary and given a key (M1, M2…) whose full list is a note under the table (and the
    cell's tooltip on screen)."""
    headers = [comp.header(k) for k in comp.columns]
    rows = comp.table_rows()
    block = TableBlock(headers, rows, [comp.numeric(k) for k in comp.columns])
    if "model" not in comp.columns:
        return block
    col = comp.columns.index("model")
    keys: dict[str, str] = {}
    for i, row in enumerate(rows):
        full = row[col]
        if len(full) <= MODEL_CELL:
            continue
        if full not in keys:
            keys[full] = f"M{len(keys) + 1}"
            block.notes.append(f"{keys[full]}: {full}")
        cut = full[:MODEL_CELL]
        cut = cut[: cut.rfind("-")] if "-" in cut else cut
        row[col] = f"{keys[full]}: {cut}…"
        block.titles[(i, col)] = full
    return block


def split_table(block: TableBlock, comp: Comparison) -> list[TableBlock]:
    """A table of more than SPLIT_AT columns as two, each starting with the name: the verdict's columns (what
    a reader checks first), then the rest; every column stays on the page, on screen and printed."""
    keys = list(comp.columns)
    if len(keys) <= SPLIT_AT or "name" not in keys:
        return [block]
    first = [k for k in keys if k in ("name", "n", "regularizer", comp.metric, *BASELINE_COLUMNS)]
    rest = ["name", *(k for k in keys if k not in first)]

    def part(cols: list[str]) -> TableBlock:
        idx = [keys.index(k) for k in cols]
        where = {j: i for i, j in enumerate(idx)}
        titles = {(r, where[c]): v for (r, c), v in block.titles.items() if c in where}
        notes = block.notes if any(keys[j] == "model" for j in idx) else []
        return TableBlock(
            [block.headers[j] for j in idx],
            [[row[j] for j in idx] for row in block.rows],
            [block.numeric[j] for j in idx] if block.numeric else [],
            notes,
            titles,
        )

    return [part(first), part(rest)]


def provenance_table(runs: Sequence[Run]) -> TableBlock | None:
    """Where each run's code came from: the config's git commit (with `+dirty`), the package-set hash and
    versions, as summary.json records them (runs trained before provenance was recorded show `-`)."""
    rows = []
    for run in runs:
        prov = run.summary.get("provenance") or {}
        git = prov.get("git") or {}
        commit = (git.get("commit") or "")[:12] + ("+dirty" if git.get("dirty") else "") if git else "-"
        versions = run.summary.get("versions") or {}
        ver = ", ".join(f"{k} {v}" for k, v in versions.items()) or "-"
        rows.append([run.name, commit or "-", (prov.get("packages") or "-")[:12], ver])
    if not any(r[1] != "-" or r[2] != "-" for r in rows):
        return None
    return TableBlock(["run", "git", "packages", "versions"], rows)


def _legend(comp: Comparison, t: dict[str, str]) -> list[Block]:
    lines = [t["legend"]]
    if any(row.is_group for row in comp.rows):
        lines.append(t["legend_groups"])
    if comp.baseline:
        lines.append(t["legend_baseline"].format(metric=comp.metric, base=comp.baseline.label))
    return [Para(" ".join(lines))]


def _best_run(comp: Comparison) -> Run | None:
    done = [(first_head(r.summary.get("test_acc")), r) for r in comp.runs if r.status == "completed"]
    done = [(a, r) for a, r in done if a is not None]
    return max(done, key=lambda t: t[0])[1] if done else None


def _samples(run: Run, cache: DataCache, count: int, model_of, file: Path) -> Path:
    import torch

    from ..training.infer import probabilities

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
    return plots.sample_grid(x[pick].numpy(), heads, file)


def _confusion(run: Run, cache: DataCache, model_of, file: Path) -> Path:
    from ..training.infer import probabilities

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
    return plots.confusion(mats, heads, file)


def _run_links(comp: Comparison, folder: Path) -> Links:
    items = []
    for row in comp.rows:
        for run in row.runs:
            links = [(f, os.path.relpath(run.path / f, folder)) for f in RUN_FILES if (run.path / f).is_file()]
            items.append((f"{run.name} ({run.status})", links))
    return Links(items)
