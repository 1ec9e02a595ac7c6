"""report: report.md and a self-contained report.html whose links all exist, with valid figures; runs
without a model or data lose only their figures."""

from __future__ import annotations

import re

import pytest
from conftest import tiny
from rundirs import fake_run, metrics_rows, train_runs
from test_compare import png_size
from typer.testing import CliRunner

import regbench
from regbench.analysis.report import write_report
from regbench.cli.main import app
from regbench.core.errors import DataError

runner = CliRunner()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = train_runs(tmp_path_factory.mktemp("rep") / "runs")
    regbench.train(tiny(name="two_heads", data__classes=[3, 4], optimizer__lr=0.01), root, quiet=True)
    fake_run(root / "tiny-running", "running", seed=9, metrics=metrics_rows([0.4]), torn=True)
    return root


def md_targets(text: str) -> list[str]:
    return [t.strip("<>") for t in re.findall(r"\]\(([^)]+)\)", text)]


def test_report_writes_md_and_self_contained_html_linking_only_existing_files(runs, tmp_path):
    out = tmp_path / "report"
    res = write_report(sorted(runs.iterdir()), out, baseline="tiny", lang="en")
    md = res.md.read_text(encoding="utf-8")
    page = res.html.read_text(encoding="utf-8")
    for section in ("## Comparison", "## Learning curves", "## Config differences", "## Parameter distributions",
                    "## Sample test predictions", "## Confusion matrix of the best run", "## Runs"):  # fmt: skip
        assert section in md
    assert "| tiny | 3 |" in md and "| tiny_l2 | 2 |" in md and "baseline" in md
    targets = md_targets(md)
    assert targets and all((out / t).exists() for t in targets), [t for t in targets if not (out / t).exists()]
    assert "model.pt" not in "".join(t for t in targets if "tiny-running" in t)  # it has none
    assert "config.yaml" in "".join(t for t in targets if "tiny-running" in t)
    # html: every image embedded, every link an existing file
    assert "<img src='data:image/png;base64," in page and not re.findall(r"<img src='(?!data:)", page)
    hrefs = re.findall(r"href='([^']+)'", page)
    assert hrefs and all((out / h).exists() for h in hrefs)
    # figures: curves, one histogram per run with a model (6), samples per row (4), one confusion matrix
    names = sorted(p.name for p in res.figures)
    assert "curves.png" in names and sum(n.startswith("hist-") for n in names) == 6
    assert sum(n.startswith("samples-") for n in names) == 3 and sum(n.startswith("confusion-") for n in names) == 1
    for p in res.figures:
        w, h = png_size(p)
        assert w >= 300 and h >= 200 and p.stat().st_size > 5_000
    # the running run has no model.pt: its figures are notes, not a crash
    assert any("tiny-running" in n and "model.pt" in n for n in res.notes)
    assert "## Notes" in md


def test_two_head_samples_show_both_heads(runs, tmp_path):
    res = write_report([runs], tmp_path / "r", where=["name==two_heads"])
    (samples,) = [p for p in res.figures if p.name.startswith("samples-")]
    (confusion,) = [p for p in res.figures if p.name.startswith("confusion-")]
    one = write_report([runs], tmp_path / "r1", where=["name==tiny_l2"], samples=4)
    (one_samples,) = [p for p in one.figures if p.name.startswith("samples-")]
    assert png_size(samples)[1] > png_size(one_samples)[1]  # a row of bars per head
    assert png_size(confusion)[0] > png_size(one.figures[-1])[0]  # one matrix per head


def test_missing_data_skips_sample_figures_with_a_note(runs, tmp_path, monkeypatch):
    import regbench.data

    def no_data(cfg):
        raise DataError(f"data/{cfg.name}: files not found; run regbench datasets prepare")

    monkeypatch.setattr(regbench.data, "load_data", no_data)
    res = write_report([runs], tmp_path / "r", where=["name==tiny"], samples=2)
    assert not any(p.name.startswith(("samples-", "confusion-")) for p in res.figures)
    assert any("files not found" in n for n in res.notes)
    assert sum(p.name.startswith("hist-") for p in res.figures) == 3
    md = res.md.read_text(encoding="utf-8")
    assert all((res.md.parent / t).exists() for t in md_targets(md))


def test_cli_report(runs, tmp_path):
    out = tmp_path / "cli-report"
    res = runner.invoke(app, ["report", str(runs), "-o", str(out), "--samples", "3", "--where", "name!=two_heads"])
    assert res.exit_code == 0, res.output
    assert f"Report written to {out / 'report.md'}" in res.stdout
    assert (out / "report.html").is_file() and "note:" in res.stderr  # the running run has no model
    res = runner.invoke(app, ["report", str(tmp_path / "nothing"), "-o", str(out)])
    assert res.exit_code == 2 and "error: no run directories found" in res.output
