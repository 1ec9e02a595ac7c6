"""compare: rows and numbers from real tiny runs, seed groups, --where/--sort/--columns, formats, baseline
verdicts, plots, and skipping what is not a run."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import statistics
import sys
import types

import pytest
from rundirs import fake_run, metrics_rows, train_runs
from typer.testing import CliRunner

from regbench.analysis.columns import BASELINE_COLUMNS, model_summary, regularizer_text
from regbench.analysis.compare import CompareError, compare
from regbench.analysis.selection import collect_runs, parse_where
from regbench.cli.main import app
from regbench.core.stats import Stat, verdict, welch_p
from regbench.rundir import load_run

runner = CliRunner()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return train_runs(tmp_path_factory.mktemp("cmp") / "runs")


def summaries(runs_dir, name):
    return [load_run(p).summary for p in sorted(runs_dir.iterdir()) if load_run(p).config["name"] == name]


# ----------------------------------------------------------------------------------------------- table
def test_seed_groups_give_mean_and_sample_std(runs):
    comp = compare([runs])
    assert [(r.label, r.n) for r in comp.rows] == [("tiny", 3), ("tiny_l2", 2)]
    tiny_row = comp.rows[0]
    accs = [s["test_acc"] for s in summaries(runs, "tiny")]
    stat = tiny_row.values["test_acc"]
    assert isinstance(stat, Stat) and stat.n == 3
    assert stat.mean == pytest.approx(statistics.mean(accs))
    assert stat.std == pytest.approx(statistics.stdev(accs))
    secs = [s["train_s"] / s["members"] for s in summaries(runs, "tiny")]  # the pass's wall time per member
    assert tiny_row.values["train_s_share"].mean == pytest.approx(statistics.mean(secs))
    assert tiny_row.values["status"] == "completed" and tiny_row.values["epochs"] == 2
    assert tiny_row.values["regularizer"] == "-" and comp.rows[1].values["regularizer"] == "l2 0.01"
    assert tiny_row.values["model"] == "conv(3,4)-max(2)-16" and tiny_row.values["optimizer"] == "adam 0.01"


def test_no_group_gives_one_row_per_run_with_its_own_numbers(runs):
    comp = compare([runs], group=False, columns="test_acc,seed")
    assert len(comp.rows) == 5 and comp.columns == ["name", "test_acc", "seed"]
    for row in comp.rows:
        (run,) = row.runs
        assert row.label == run.path.name and row.values["test_acc"] == run.summary["test_acc"]
        assert row.values["seed"] == run.config["seed"]


def test_glob_style_paths_and_directories_find_the_same_runs(runs):
    by_dir = compare([runs])
    by_glob = compare(sorted(runs.iterdir()))
    assert [r.label for r in by_dir.rows] == [r.label for r in by_glob.rows]
    assert compare([runs.parent]).runs[0].path.parent == runs  # searched recursively


def test_csv_and_json_parse_with_numbers(runs):
    comp = compare([runs])
    rows = list(csv.DictReader(io.StringIO(comp.render("csv"))))
    assert [r["name"] for r in rows] == ["tiny", "tiny_l2"] and rows[0]["n"] == "3"
    assert float(rows[0]["test_acc"]) == pytest.approx(comp.rows[0].values["test_acc"].mean)
    assert float(rows[0]["test_acc_std"]) == pytest.approx(comp.rows[0].values["test_acc"].std)
    data = json.loads(comp.render("json"))
    first = data["rows"][0]
    assert first["name"] == "tiny" and first["n"] == 3 and len(first["runs"]) == 3
    assert isinstance(first["test_acc"]["mean"], float) and len(first["test_acc"]["values"]) == 3
    assert isinstance(first["train_s_share"]["std"], float) and first["epochs"] == 2
    md = comp.render("markdown").splitlines()
    assert md[0].startswith("| name | n | data | model |") and len(md) == 4
    assert "±" in md[2] and "conv(3,4)-max(2)-16" in md[2]


def test_where_filters_runs(runs):
    assert [r.label for r in compare([runs], where=["regularizer.l2_decay>0"]).rows] == ["tiny_l2"]
    assert [r.n for r in compare([runs], where=["data.name==synthetic and seed<=2"]).rows] == [2, 2]
    assert [r.n for r in compare([runs], where=["seed!=1", "name==tiny"]).rows] == [2]
    assert compare([runs], where=["test_acc>=0", "status==completed"]).runs
    comp = compare([runs], where=["data.name==digits"])
    assert comp.rows == [] and "no run matches" in comp.warnings[-1]


@pytest.mark.parametrize(
    "expr, message",
    [
        ("regularizer.l2>0", "unknown key 'regularizer.l2' (close: regularizer.l2_decay"),
        ("test_ac>=0.9", "close: test_acc"),
        ("l2_decay = 0.1", "cannot read 'l2_decay = 0.1'; expected KEY OP VALUE"),
        ("__import__('os')", "cannot read"),
        ("seed>", "cannot read"),
    ],
)
def test_where_errors_are_one_line(runs, expr, message):
    with pytest.raises(CompareError, match=None) as e:
        compare([runs], where=[expr])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_parse_where_values_are_typed():
    (c,) = parse_where(["optimizer.lr>=1e-3"])
    assert c.key == "optimizer.lr" and c.op == ">=" and c.value == 0.001
    a, b = parse_where(["data.name == 'digits' and train.show_params==true"])
    assert a.value == "digits" and b.value is True


def test_sort_and_columns(runs):
    comp = compare([runs], group=False, sort="test_acc", columns=["test_acc", "optimizer.lr", "params.weights"])
    accs = [r.values["test_acc"] for r in comp.rows]
    assert accs == sorted(accs) and comp.columns == ["name", "test_acc", "optimizer.lr", "params.weights"]
    assert comp.rows[0].values["optimizer.lr"] == 0.01 and comp.rows[0].values["params.weights"] > 0
    desc = compare([runs], group=False, sort="-test_acc")
    assert [r.values["test_acc"] for r in desc.rows] == sorted(accs, reverse=True)
    with pytest.raises(CompareError, match=r"--columns: unknown key 'tset_acc' \(close: test_acc"):
        compare([runs], columns="tset_acc")
    with pytest.raises(CompareError, match="--sort: unknown key"):
        compare([runs], sort="nothing_like_it")


# ----------------------------------------------------------------------------------------------- baseline
def test_baseline_by_group_label_run_path_or_name(runs):
    comp = compare([runs], baseline="tiny")
    base, other = comp.rows
    assert comp.baseline is base and base.verdict.text == "baseline" and comp.columns[-7:] == list(BASELINE_COLUMNS)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    expect = mean([s["test_acc"] for s in summaries(runs, "tiny_l2")]) - mean(
        [s["test_acc"] for s in summaries(runs, "tiny")]
    )
    assert other.verdict.delta == pytest.approx(expect)
    assert other.verdict.text in ("better", "worse") or other.verdict.text.startswith("not distinguishable at n=2 vs 3")
    one = other.runs[0].path
    assert compare([runs], baseline=str(one)).baseline.label == "tiny_l2"
    assert compare([runs], baseline=one.name).baseline.label == "tiny_l2"
    single = compare([runs], group=False, baseline=one.name)
    # single runs: McNemar on the test set's examples (test-set noise), from each run's saved predictions
    assert {r.verdict.test for r in single.rows if r.verdict.text != "baseline"} == {"McNemar (test-set noise)"}
    val = compare([runs], group=False, baseline=one.name, metric="best_val_acc")  # no per-example record
    assert {r.verdict.text for r in val.rows if r.verdict.text != "baseline"} == {"cannot tell with n=1"}
    with pytest.raises(CompareError, match="--baseline: 'nope' is not among the compared runs"):
        compare([runs], baseline="nope")


def test_verdict_on_known_inputs():
    hi, lo = [0.90, 0.91, 0.92], [0.80, 0.81, 0.79]
    assert verdict(hi, lo).text == "better" and verdict(lo, hi).text == "worse"
    assert verdict(hi, lo).delta == pytest.approx(0.11)
    assert verdict([0.90, 0.95, 0.85], [0.91, 0.86, 0.93]).text == "not distinguishable at n=3"
    assert verdict([0.90, 0.95], [0.91, 0.86, 0.93]).text == "not distinguishable at n=2 vs 3"
    assert verdict([0.9], lo).text == "cannot tell with n=1" and verdict(hi, [0.8]).p is None
    assert verdict([0.3, 0.31, 0.29], [0.5, 0.52, 0.49], higher_is_better=False).text == "better"  # a loss
    assert verdict([0.9, 0.9], [0.9, 0.9]).text == "not distinguishable at n=2"
    assert verdict([], hi).text == "no value"
    # Welch's p by hand: t = Δ/sqrt(s1²/n1 + s2²/n2), Welch–Satterthwaite df
    from scipy import stats

    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0]
    va, vb = statistics.variance(a) / 4, statistics.variance(b) / 3
    t = (statistics.mean(a) - statistics.mean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 2)
    assert welch_p(a, b) == pytest.approx(2 * stats.t.sf(abs(t), df))


def test_stat_is_mean_and_sample_std():
    s = Stat.of([1, 2, 3, 4])
    assert (s.mean, s.n) == (2.5, 4) and s.std == pytest.approx(statistics.stdev([1, 2, 3, 4]))
    assert Stat.of([0.5]).std is None


# ----------------------------------------------------------------------------------------------- edge cases
def test_incomplete_and_corrupt_runs_are_shown_or_skipped_with_a_warning(tmp_path):
    root = tmp_path / "runs"
    fake_run(
        root / "a-done1",
        seed=1,
        summary={"test_acc": 0.9, "train_acc": 0.95, "val_acc": 0.9},
        metrics=metrics_rows([0.5, 0.9]),
    )
    fake_run(
        root / "a-done2",
        seed=2,
        summary={"test_acc": 0.8, "train_acc": 0.85, "val_acc": 0.8},
        metrics=metrics_rows([0.5, 0.8]),
    )
    fake_run(root / "a-running", "running", seed=3, metrics=metrics_rows([0.4]), torn=True)
    fake_run(root / "a-failed", "failed", seed=4, summary={"error": "RuntimeError: boom"})
    fake_run(root / "a-diverged", "diverged", seed=5, metrics=metrics_rows([0.1]))
    fake_run(root / "a-interrupted", "interrupted", seed=6, metrics=metrics_rows([0.3]))
    bad_json = fake_run(root / "b-corrupt", seed=7)
    (bad_json / "summary.json").write_text('{"name": "tiny", "status": ', encoding="utf-8")
    only_config = root / "c-starting"
    only_config.mkdir()
    (only_config / "config.yaml").write_text("name: tiny\n", encoding="utf-8")
    bad_yaml = fake_run(root / "d-badyaml", seed=8)
    (bad_yaml / "config.yaml").write_text("name: [unclosed\n", encoding="utf-8")
    list_summary = fake_run(root / "e-list", seed=9)
    (list_summary / "summary.json").write_text("[1, 2]", encoding="utf-8")
    (root / "empty-dir").mkdir()
    (root / "notes.txt").write_text("not a run", encoding="utf-8")
    weird = fake_run(
        root / "f-weird", seed=10, name="weird", summary={"test_acc": "high", "train_s": None, "params": [1]}
    )

    paths = sorted(root.iterdir()) + [tmp_path / "missing"]
    comp = compare(paths)
    rows = {r.label: r for r in comp.rows}
    assert rows["tiny"].n == 2 and rows["tiny"].values["test_acc"].mean == pytest.approx(0.85)
    for name, status in [
        ("a-running", "running"),
        ("a-failed", "failed"),
        ("a-diverged", "diverged"),
        ("a-interrupted", "interrupted"),
    ]:
        assert rows[name].n == 1 and rows[name].values["status"] == status and rows[name].values["test_acc"] is None
    assert rows["a-running"].values["epochs"] == 1  # the torn metrics line is skipped
    assert len(load_run(root / "a-running").metrics) == 1
    assert rows["f-weird"].values["test_acc"] is None and rows["f-weird"].values["near_zero_pct"] is None
    skipped = " ".join(comp.warnings)
    for name in ("b-corrupt", "c-starting", "d-badyaml", "e-list", "empty-dir", "notes.txt", "missing"):
        assert name in skipped
    assert len(comp.warnings) == 7 and all("\n" not in w for w in comp.warnings)
    assert weird.exists()
    # every output format and the plot still work with these rows
    for fmt in ("table", "csv", "markdown", "json"):
        assert comp.render(fmt)
    verdicts = {r.label: r.verdict.text for r in compare(paths, baseline="tiny").rows}
    assert verdicts["tiny"] == "baseline" and verdicts["a-failed"] == "no value"


def test_nothing_to_compare_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CompareError, match="no run directories found in"):
        compare([tmp_path / "empty"])
    runs, warnings = collect_runs([tmp_path / "empty", tmp_path / "nope"])
    assert runs == [] and len(warnings) == 2


def test_groups_with_the_same_name_are_labelled_by_what_differs(tmp_path):
    root = tmp_path / "runs"
    for i, lr in enumerate((0.01, 0.01, 0.1, 0.1)):
        fake_run(root / f"r{i}", seed=i, optimizer__lr=lr, summary={"test_acc": 0.5 + i / 10})
    labels = [r.label for r in compare([root]).rows]
    assert labels == ["tiny [optimizer.lr=0.01]", "tiny [optimizer.lr=0.1]"]


def test_model_and_regularizer_text():
    cfg = {
        "model": {
            "layers": [
                ["noise", {"type": "normal", "mean": 0, "std": 0.01}],
                ["conv", {"ksize": 3, "chn": 6}],
                ["max", {"stride": 2}],
                ["dropout", {"keep_prob": 0.6}],
                ["batch_normal"],
                ["avg", {"stride": 3}],
                30,
            ]
        },
        "regularizer": {"l2_decay": 0.1, "l1_decay": 0.0, "mode": "decoupled"},
    }
    assert model_summary(cfg) == "noise(normal std=0.01)-conv(3,6)-max(2)-dropout(0.6)-batch_normal-avg(3)-30"
    assert regularizer_text(cfg) == "l2 0.1, noise 0.01, dropout 0.6, batch_normal"
    assert regularizer_text({"model": {"layers": [30]}, "regularizer": {"l1_decay": 0.01}}) == "l1 0.01"
    assert regularizer_text({}) == "-" and model_summary({"model": {"layers": [["?", 1]]}}) == "?"


def test_regularizer_inside_blocks_shows_in_compare(tmp_path):
    nested = [
        ["serial", {"repeat": 2, "layers": [["conv", {"ksize": 3, "chn": 4}], ["dropout", {"keep_prob": 0.6}]]}],
        ["parallel", {"branches": [[["noise", {"std": 0.05}]], [["residual", {"layers": [["batch_normal"]]}]]]}],
        ["max", {"stride": 2}],
        16,
    ]
    fake_run(tmp_path / "r" / "nested", summary={"test_acc": 0.5}, model__layers=nested)
    comp = compare([tmp_path / "r"], columns="model,regularizer")
    row = comp.rows[0].values
    assert row["regularizer"] == "dropout 0.6, noise 0.05, batch_normal"
    assert row["model"] == (
        "serial×2[conv(3,4)-dropout(0.6)]-parallel[noise(normal std=0.05) | residual[batch_normal]]-max(2)-16"
    )
    assert "| dropout 0.6, noise 0.05, batch_normal |" in comp.render("markdown")


# ----------------------------------------------------------------------------------------------- plot and CLI
def png_size(path):
    from PIL import Image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        return im.size


def test_plot_is_a_valid_png_with_step_panel_when_steps_exist(runs, tmp_path):
    compare([runs], plot=tmp_path / "c.png")
    w, h = png_size(tmp_path / "c.png")
    assert w > 600 and h > 300 and (tmp_path / "c.png").stat().st_size > 20_000
    root = tmp_path / "withsteps"
    run = fake_run(root / "s1", summary={"test_acc": 0.5}, metrics=metrics_rows([0.3, 0.5, 0.6]))
    (run / "steps.jsonl").write_text(
        "".join(json.dumps({"step": i, "loss": 2 / (i + 1)}) + "\n" for i in range(30)) + '{"st',
        encoding="utf-8",
    )
    compare([root], plot=tmp_path / "s.png")
    assert png_size(tmp_path / "s.png")[0] > w  # a third panel: the per-step loss


def test_cli_compare_formats_and_errors(runs, tmp_path):
    res = runner.invoke(app, ["compare", str(runs)])
    assert res.exit_code == 0, res.output
    assert "tiny_l2" in res.output and "test acc" in res.output and "±" in res.output
    res = runner.invoke(app, ["compare", *map(str, sorted(runs.iterdir())), "-f", "csv", "--baseline", "tiny"])
    assert res.exit_code == 0 and list(csv.DictReader(io.StringIO(res.stdout)))[0]["verdict"] == "baseline"
    res = runner.invoke(app, ["compare", str(runs), "-f", "json", "--plot", str(tmp_path / "p.png")])
    assert res.exit_code == 0 and json.loads(res.stdout)["rows"] and (tmp_path / "p.png").is_file()
    res = runner.invoke(app, ["compare", str(runs), "--where", "regularizer.l3_decay>0"])
    assert (
        res.exit_code == 2
        and res.output.startswith("error: --where: unknown key")
        and len(res.output.splitlines()) == 1
    )
    res = runner.invoke(app, ["compare", str(tmp_path / "none")])
    assert res.exit_code == 2 and "error: no run directories found" in res.output
    res = runner.invoke(app, ["compare", str(runs), "-f", "xml"])
    assert res.exit_code == 2


def test_cli_compare_warns_on_stderr_and_keeps_stdout_clean(runs, tmp_path):
    (tmp_path / "junk").mkdir()
    res = runner.invoke(app, ["compare", str(runs), str(tmp_path / "junk"), "-f", "json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["rows"]
    assert "warning: skipped" in res.stderr and "junk" in res.stderr


def test_to_pandas_is_optional(runs, monkeypatch):
    import builtins

    comp = compare([runs])
    real_import = builtins.__import__

    def no_pandas(name, *a, **k):
        if name == "pandas":
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    with pytest.raises(CompareError, match="needs pandas"):
        comp.to_pandas()
    monkeypatch.setattr(builtins, "__import__", real_import)
    fake = types.ModuleType("pandas")
    fake.DataFrame = lambda records: ("frame", records)
    monkeypatch.setitem(sys.modules, "pandas", fake)
    kind, records = comp.to_pandas()
    assert kind == "frame" and records[0]["name"] == "tiny" and records[0]["test_acc_std"] >= 0
    assert str(comp.rows[0].values["test_acc"]).endswith("(n=3)")


def test_rich_table_hides_optional_columns_to_fit_and_escapes_labels(runs, tmp_path):
    from rich.console import Console

    console = Console(width=100, record=True, file=io.StringIO())
    console.print(compare([runs], baseline="tiny").to_rich(100))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "hidden to fit 100 columns: w_mean" in " ".join(text.split()) and "0." in text and "baseline" in text
    root = tmp_path / "runs"
    for i, lr in enumerate((0.01, 0.01, 0.1, 0.1)):
        fake_run(root / f"r{i}", seed=i, optimizer__lr=lr, summary={"test_acc": 0.5 + i / 10})
    assert "tiny [optimizer.lr=0.01]" in compare([root]).render("table")  # not eaten as Rich markup


def test_a_seed_run_twice_counts_once_in_its_group(tmp_path):
    """Re-running the same config and seed gives the same numbers on a CPU: it must not inflate n."""
    from conftest import tiny

    import regbench
    from regbench.analysis.compare import compare

    for seed in (1, 1, 2):
        regbench.train(tiny(seed=seed, train__epochs=1), tmp_path / "r", quiet=True)
    comp = compare([tmp_path / "r"])
    (row,) = comp.rows
    assert row.n == 2 and sorted(r.config["seed"] for r in row.runs) == [1, 2]
    assert any("seed 1 of" in w and "counted once" in w for w in comp.warnings)


@pytest.mark.parametrize(
    "expr, message",
    [
        ("test_acc>>0.9", "cannot read 'test_acc>>0.9'"),
        ("test_acc>=abc", "'test_acc>=abc': >= needs a number, got 'abc'"),
        ("test_acc>=0.9 or test_acc<0.7", "'or' is not supported"),
        ("n>1", "n is the size of a seed group"),
    ],
)
def test_malformed_where_is_an_error(expr, message):
    from regbench.analysis.compare import CompareError
    from regbench.analysis.selection import parse_where

    with pytest.raises(CompareError, match=re.escape(message)):
        parse_where([expr])
