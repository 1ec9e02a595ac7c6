"""Results that hand in: compare's LaTeX table (compiled when pdflatex is here) and config diffs, the report's
language and SVG figures, curves.png in every run, provenance in summary.json, and smoke rehearsals kept
out of compare."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from conftest import tiny, write
from rundirs import fake_run, metrics_rows
from test_compare import png_size
from typer.testing import CliRunner

import regbench
from regbench.analysis.latex import escape
from regbench.analysis.report import write_report
from regbench.cli.main import app

runner = CliRunner()
LAYERS = [["conv", {"ksize": 3, "chn": 4}], ["max", {"stride": 2}], ["dropout", {"keep_prob": 0.7}], 16]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """base × 2 seeds, dropout_x × 2 seeds (a nested layer parameter differs), one English run."""
    root = tmp_path_factory.mktemp("handin") / "runs"
    for seed in (1, 2):
        regbench.train(tiny(name="base", seed=seed, optimizer__lr=0.01), root, quiet=True)
        regbench.train(tiny(name="dropout_x", seed=seed, optimizer__lr=0.01, model__layers=LAYERS), root, quiet=True)
    regbench.train(tiny(name="english", seed=5), root, quiet=True, lang="en")
    return root


def test_latex_table_is_booktabs_with_escaped_names_and_compiles(runs, tmp_path):
    res = runner.invoke(app, ["compare", str(runs), "-b", "base", "-f", "latex", "-w", "name!=english"])
    assert res.exit_code == 0, res.output
    tex = res.stdout
    body = tex[tex.index("\\begin{tabular}") : tex.index("\\end{tabular}")]
    spec = re.match(r"\\begin\{tabular\}\{([lr]+)\}", body).group(1)
    rows = [line for line in body.splitlines() if line.endswith(r"\\")]
    assert ["\\toprule", "\\midrule", "\\bottomrule"] == re.findall(r"\\(?:top|mid|bottom)rule", tex)
    assert len(rows) == 3 and all(row.count(" & ") == len(spec) - 1 for row in rows)  # header + 2 rows
    assert "dropout\\_x" in tex and "$\\pm$" in tex and "$\\Delta$ test acc" in tex and "verdict" in rows[0]
    assert "baseline" in tex and "not distinguishable" in tex
    assert escape("a_b & 50% #1 {x} ~^\\") == (
        r"a\_b \& 50\% \#1 \{x\} \textasciitilde{}\textasciicircum{}\textbackslash{}"
    )
    if not shutil.which("pdflatex"):
        pytest.skip("pdflatex not installed: the structure was checked")
    (tmp_path / "table.tex").write_text(tex, encoding="utf-8")
    doc = "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n\\tiny\n\\input{table.tex}\n\\end{document}\n"
    (tmp_path / "doc.tex").write_text(doc, encoding="utf-8")
    out = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and (tmp_path / "doc.pdf").stat().st_size > 1000, out.stdout[-2000:]


def test_diff_shows_only_differing_keys_of_runs_and_seed_groups(runs):
    d = regbench.diff("base", "dropout_x", [runs])
    keys = {k: (a, b) for k, a, b in d.keys}
    assert keys["name"] == ("base", "dropout_x")
    assert keys["model.layers[2]"] == ("full", "dropout") and keys["model.layers[2].keep_prob"] == ("(absent)", 0.7)
    assert "seed" not in keys and "optimizer.lr" not in keys  # both groups have seeds 1, 2; equal lr
    # two run directories of one group: only the seed differs
    a, b = sorted(p for p in runs.iterdir() if p.name.startswith("base"))
    res = runner.invoke(app, ["compare", "--diff", str(a), str(b), "-f", "json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["differences"] == [{"key": "seed", "a": 1, "b": 2}]
    res = runner.invoke(app, ["compare", str(runs), "--diff", "base", "nope"])
    assert res.exit_code == 2 and "error: --diff: 'nope' is not among the compared runs" in res.output


def test_report_language_follows_the_runs_and_figures_can_be_svg(runs, tmp_path):
    ko = write_report([runs], tmp_path / "ko", where=["name!=english"], samples=0)
    assert "## 비교" in ko.md.read_text(encoding="utf-8")  # trained with the default lang ko
    en = write_report([runs], tmp_path / "en", where=["name==english"], samples=0, figures="svg")
    md = en.md.read_text(encoding="utf-8")
    assert "## Comparison" in md and "## Learning curves" in md
    assert en.figures and all(p.suffix == ".svg" and p.read_text()[:200].count("<svg") for p in en.figures)
    assert "data:image/svg+xml;base64," in en.html.read_text(encoding="utf-8")
    # captions say the run name once (the figures carry no title repeating it)
    caps = re.findall(r"^\*(.+)\*$", md, re.M)
    assert caps and all(c.count("english-") <= 1 for c in caps)
    res = runner.invoke(app, ["report", str(runs), "-o", str(tmp_path / "x"), "--lang", "fr"])
    assert res.exit_code == 2 and "--lang: expected one of ko, en" in res.output


def test_every_run_draws_its_learning_curves(runs):
    for run in runs.iterdir():
        w, h = png_size(run / "curves.png")
        assert w >= 600 and h >= 250


def test_provenance_names_the_config_repository_commit_and_package_set(tmp_path):
    repo = tmp_path / "lab"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    cfg = write(repo / "exp.yaml", json.dumps(tiny(name="prov").to_dict()))
    subprocess.run([*git, "add", "exp.yaml"], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    run = regbench.train(cfg, tmp_path / "runs", quiet=True)
    prov = run.summary["provenance"]
    assert prov["git"]["commit"] == head and prov["git"]["dirty"] is False
    assert prov["config"] == str(cfg.resolve()) and re.fullmatch(r"[0-9a-f]{64}", prov["packages"])
    assert run.summary["versions"]["torch"]
    # the CLI (which loads the config first) records the config's repository too, not the current directory's
    res = runner.invoke(app, ["train", str(cfg), "-q", "--out", str(tmp_path / "cli")])
    assert res.exit_code == 0, res.output
    (cli_run,) = (tmp_path / "cli").iterdir()
    assert json.loads((cli_run / "summary.json").read_text())["provenance"]["git"]["commit"] == head
    (repo / "exp.yaml").write_text(cfg.read_text() + "\n# edited\n")
    assert regbench.train(cfg, tmp_path / "r2", quiet=True).summary["provenance"]["git"]["dirty"] is True
    rep = write_report([run.path], tmp_path / "rep", samples=0, lang="en")
    assert f"| {run.name} | {head[:12]} | {prov['packages'][:12]} |" in rep.md.read_text(encoding="utf-8")


def test_smoke_runs_stay_out_of_compare_unless_asked(tmp_path):
    root = tmp_path / "runs"
    fake_run(root / "real", metrics=metrics_rows([0.5, 0.6]), summary={"test_acc": 0.6})
    fake_run(root / "smoke" / "g" / "rehearsal", name="rehearsal", summary={"test_acc": 0.1, "smoke": True})
    comp = regbench.compare(root)
    assert [r.path.name for r in comp.runs] == ["real"] and any("1 smoke run" in w for w in comp.warnings)
    assert len(regbench.compare(root, smoke=True).runs) == 2
    res = runner.invoke(app, ["compare", str(root), "-f", "csv"])
    assert res.exit_code == 0 and "rehearsal" not in res.stdout
    res = runner.invoke(app, ["compare", str(root / "smoke")])
    assert res.exit_code == 2 and "no run directories found" in res.output
    res = runner.invoke(app, ["compare", str(root), "--smoke", "-f", "csv"])
    assert res.exit_code == 0 and "rehearsal" in res.stdout


def test_suite_smoke_goes_under_smoke_and_compare_lists_none(tmp_path):
    res = runner.invoke(app, ["suite", "dlfs-digits-batchnorm", "--smoke", "-o", str(tmp_path), "--quiet"])
    assert res.exit_code == 0, res.output
    made = list((tmp_path / "smoke" / "dlfs-digits-batchnorm").iterdir())
    assert len(made) == 2 and all(json.loads((p / "summary.json").read_text())["smoke"] for p in made)
    res = runner.invoke(app, ["compare", str(tmp_path)])
    assert res.exit_code == 2 and "no run directories found" in res.output and "smoke" in res.output


def test_train_on_in_memory_arrays_with_an_epoch_callback(tmp_path):
    import numpy as np
    import torch

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (90,), generator=g)
    x = torch.rand(90, 1, 8, 8, generator=g) + y.view(-1, 1, 1, 1) * 0.5  # torch, N×C×H×W
    rows = []
    runs = regbench.train(
        tiny(name="mem"), tmp_path, seeds=2, quiet=True, x=x[:70], y=y[:70], x_test=x[70:].numpy(),
        y_test=y[70:].numpy(), classes=["a", "b", "c"], on_epoch=rows.append,
    )  # fmt: skip
    assert sorted((r["seed"], r["epoch"]) for r in rows) == [(1234, 1), (1234, 2), (1235, 1), (1235, 2)]
    assert all(rows[i]["val_acc"] == pytest.approx(m["val_acc"]) for i, m in enumerate(runs[0].metrics[:1]))
    run = runs[0]
    assert run.config["data"]["name"] == "arrays" and run.config["data"]["split"] == "official"
    assert run.summary["data"]["test"] == 20 and run.summary["heads"][0]["classes"] == ["a", "b", "c"]
    assert [p.name for p in tmp_path.rglob("*.npz")] == ["test_pred.npz"] * 2  # nothing but the run directories
    # feature vectors, numpy; a callback that raises is a warning, the run completes
    xf = np.random.default_rng(0).random((60, 5)).astype("float32")
    with pytest.warns(UserWarning, match="on_epoch raised ZeroDivisionError"):
        one = regbench.train(
            {"name": "feat", "model": {"layers": [8]}, "train": {"epochs": 2, "show": 0, "threads": 1}},
            tmp_path, quiet=True, x=xf, y=np.arange(60) % 2, on_epoch=lambda row: 1 / 0,
        )  # fmt: skip
    assert one.status == "completed" and one.summary["input_shape"] == [5]
    with pytest.raises(regbench.DataError, match="give both x and y"):
        regbench.train(tiny(), tmp_path, quiet=True, x=xf)
