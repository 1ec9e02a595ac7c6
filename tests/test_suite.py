"""`regbench suite`: groups from configs/suites.yaml, the smoke stand-ins CI runs, the compare table, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import write
from typer.testing import CliRunner

from regbench.cli.main import app
from regbench.core.errors import ConfigError
from regbench.experiments import suite as lib
from regbench.resolve import load_config
from regbench.rundir import load_run

runner = CliRunner()
CONFIGS = Path(__file__).resolve().parent.parent / "configs"
SUITES = lib.load_suites(CONFIGS / "suites.yaml")
LEAVES = [name for name, s in SUITES.items() if not s.composite]

TINY = """
# a tiny synthetic run for the suite tests
name: {name}
data: {{name: synthetic, count: 60, classes: 3}}
model: {{layers: [[conv, {{ksize: 3, chn: 4}}], [max, {{stride: 2}}], 8]}}
regularizer: {{l2_decay: {l2}}}
train: {{epochs: 1, show: 0}}
"""


def test_the_issue_s_groups_are_there():
    for name in ("flowers-regularizers", "dlfs-digits", "office31-regularizers", "dlfs-fashion", "cifar10-workshop"):
        assert name in SUITES
    assert [s.name for s in lib.find_suites("flowers-regularizers", CONFIGS / "suites.yaml")] == [
        "flowers-l2-l1",
        "flowers-cnn",
    ]
    assert len(lib.find_suites("five-regularizers", CONFIGS / "suites.yaml")) == 3


@pytest.mark.parametrize("name", LEAVES)
def test_every_group_runs_one_tiny_epoch_with_stand_ins(name, tmp_path):
    """What CI checks for every group: one tiny epoch per config, synthetic data where the files are absent,
    and the group's compare table (baseline included)."""
    plan = lib.plan_suite(SUITES[name], smoke=True)
    result = lib.run_suite(plan, tmp_path, quiet=True)
    try:
        assert result.problems == [] and result.folder == tmp_path / "smoke" / name
        assert len(result.runs) == len(SUITES[name].configs) == len(result.comparison.rows)
        runs = [load_run(p) for p in result.runs]
        assert all(r.status == "completed" and r.summary["epochs_done"] == 1 for r in runs)
        assert all(r.summary["smoke"] is True for r in runs)  # rehearsals: compare leaves them out
        assert all(r.config["data"]["limit"]["train"] <= lib.SMOKE_LIMIT["train"] for r in runs)
        base = result.comparison.baseline
        assert base is not None and base.runs[0].config["name"] == SUITES[name].baseline
        assert [row.runs[0].config["name"] for row in result.comparison.rows] == [c.name for _, c in plan.configs]
    finally:
        shutil.rmtree(result.folder, ignore_errors=True)  # the CIFAR-10 nets leave ~1.5 GB of weights


def test_stand_in_keeps_shape_heads_and_split_ratios():
    office = lib.stand_in(load_config(CONFIGS / "ch8" / "office31_cnn.yaml"))
    assert (office.data.name, office.data.shape, office.data.classes) == ("synthetic", [96, 96, 3], [3, 31])
    cifar = lib.stand_in(load_config(CONFIGS / "cifar10" / "ensemble.yaml"))
    assert (cifar.data.shape, cifar.data.classes, cifar.data.normalize) == ([32, 32, 3], 10, "center")
    assert (
        cifar.data.split != "official"
        and cifar.data.augment == load_config(CONFIGS / "cifar10" / "ensemble.yaml").data.augment
    )
    assert (cifar.train.epochs, cifar.train.ensemble, cifar.train.show) == (1, 2, 0)
    lecture = lib.stand_in(load_config(CONFIGS / "dlfs" / "fashion_opt_sgd.yaml"))
    assert lecture.data.normalize is None and lecture.train.iterations is None  # unit needs a pixel format
    digits = lib.stand_in(load_config(CONFIGS / "dlfs" / "digits_overfit.yaml"))
    assert digits.data.name == "digits" and digits.data.limit.train == lib.SMOKE_LIMIT["train"]


def test_list_shows_every_group_and_its_data():
    res = runner.invoke(app, ["suite", "--list"])
    assert res.exit_code == 0, res.output
    for name in SUITES:
        assert name in res.output
    assert "digits" in res.output and "regbench data fetch" in res.output
    rows = {r["name"]: r for r in lib.list_groups(CONFIGS / "suites.yaml")}
    assert rows["dlfs-digits"]["present"] and rows["dlfs-digits"]["configs"] == 12
    assert rows["digits-regularizers"]["data"] == {"digits": True}


def test_a_group_file_over_seeds_trains_side_by_side_and_ends_with_the_table(tmp_path):
    for name, l2 in (("a", 0), ("b", 0.01)):
        write(tmp_path / f"{name}.yaml", TINY.format(name=name, l2=l2))
    group = write(tmp_path / "mine.yaml", "doc: two tiny configs\nbaseline: a\nconfigs: [a.yaml, b.yaml]\n")
    out = tmp_path / "out"
    args = ["suite", str(group), "--seeds", "2", "--out", str(out), "--format", "json", "-q", "--set", "train.epochs=2"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "Suite mine [1/1]" not in res.output  # --quiet: the table and the last line only
    table = json.loads(res.stdout)  # stdout is the JSON alone; the last line goes to stderr
    assert [(r["name"], r["n"], r["verdict"]) for r in table["rows"]][0] == ("a", 2, "baseline")
    assert [(r["name"], r["n"]) for r in table["rows"]] == [("a", 2), ("b", 2)]
    runs = [load_run(p) for p in sorted((out / "mine").iterdir())]
    assert len(runs) == 4 and {r.config["train"]["epochs"] for r in runs} == {2}
    assert "4 runs" in res.stderr.splitlines()[-1]


def test_runs_that_stack_train_as_one_pass_and_the_others_one_by_one(tmp_path):
    for name, l2 in (("a", 0), ("b", 0.01)):
        write(tmp_path / f"{name}.yaml", TINY.format(name=name, l2=l2))
    write(tmp_path / "c.yaml", TINY.format(name="c", l2=0).replace("chn: 4", "chn: 6"))
    suites = write(tmp_path / "suites.yaml", "g:\n  configs: [a.yaml, b.yaml, c.yaml]\nall:\n  groups: [g]\n")
    (leaf,) = lib.find_suites("all", suites)
    plan = lib.plan_suite(leaf, seeds=2)
    assert [[c.name for c in p] for p in plan.passes] == [["a", "a", "b", "b"], ["c", "c"]]
    res = runner.invoke(
        app, ["suite", "all", "--file", str(suites), "--seeds", "2", "--dry-run", "--out", str(tmp_path / "o")]
    )
    assert res.exit_code == 0 and "a, b × 2 seeds, 4 side by side" in res.output and not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["suite", "no-such-group"], "unknown group 'no-such-group'"),
        (["suite", "dlfs-digit"], "did you mean 'dlfs-digits'?"),
        (["suite", "dlfs-digits", "--set", "train.epochs=0"], "train.epochs: must be between 1 and 1000000, got 0"),
        (["suite", "dlfs-digits", "--set", "nokey=1"], "unknown key 'nokey'"),
        (["suite", "dlfs-digits", "--seeds", "0"], "seeds: must be between 1 and 1000, got 0"),
        (["suite", "flowers-cnn"], "regbench data fetch flowers"),
        (["suite"], "give a group NAME or a FILE"),
        (["suite", "dlfs-digits", "--list"], "--list shows every group"),
        (["suite", str(CONFIGS / "digits_cnn.yaml")], "this is an experiment config: `regbench train` trains it"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ here: the suites file beside the package is the default
    (tmp_path / "data").mkdir()
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "out")] if "--list" not in args else args)
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], res.output
    assert not (tmp_path / "out").exists()


def test_bad_suites_files(tmp_path):
    write(tmp_path / "a.yaml", TINY.format(name="a", l2=0))
    cases = {
        "x:\n  configs: [missing.yaml]\n": "x.configs[0]: config file not found",
        "x:\n  groups: [y]\n": "x.groups[0]: unknown group 'y'",
        "x:\n  groups: [y]\ny:\n  groups: [x]\n": "group 'x' contains itself (x → y → x)",
        "x:\n  configs: [a.yaml]\n  groups: [x]\n": "give configs: or groups:",
        "x:\n  configs: [a.yaml]\n  baseline: zzz\n": "baseline 'zzz' is not the name of one of the group's configs (a)",
        "x:\n  configs: [a.yaml]\n  set: [1]\n": "x.set: must be a mapping",
        "x:\n  configs: [a.yaml]\n  colour: red\n": "unknown key 'colour'",
        "x:\n  configs: [a.yaml, a.yaml]\n": "x.configs[1]: a.yaml is listed twice (use --seeds K for repeats)",
        "x:\n  configs: [a.yaml]\n  set: {train.epochs: abc}\n": "set.train.epochs: expected an integer, got 'abc' (in a.yaml)",
    }
    for text, message in cases.items():
        path = write(tmp_path / "s.yaml", text)
        with pytest.raises(ConfigError) as e:
            for leaf in lib.find_suites("x", path):
                lib.plan_suite(leaf)
        assert message in str(e.value) and str(path) in str(e.value), (text, str(e.value))


def test_a_diverging_config_is_reported_and_the_others_still_compare(tmp_path):
    write(tmp_path / "a.yaml", TINY.format(name="a", l2=0))
    write(tmp_path / "b.yaml", TINY.format(name="b", l2=0) + "optimizer: {name: sgd, lr: 1.0e+30}\n")
    group = write(tmp_path / "g.yaml", "baseline: a\nconfigs: [a.yaml, b.yaml]\n")
    res = runner.invoke(app, ["suite", str(group), "--out", str(tmp_path / "o"), "-q", "--format", "csv"])
    assert res.exit_code == 3, res.output
    assert res.output.startswith("warning: b: loss became nan") and ",completed,,0.0,,-,,,baseline," in res.output
    assert ",diverged," in res.output and "Suite g: 2 runs" in res.output


def test_csv_and_json_of_several_groups_are_one_document_on_stdout(tmp_path):
    for name, l2 in (("a", 0), ("b", 0.01)):
        write(tmp_path / f"{name}.yaml", TINY.format(name=name, l2=l2))
    suites = write(tmp_path / "s.yaml", "g1:\n  configs: [a.yaml]\ng2:\n  configs: [b.yaml]\n")
    out = str(tmp_path / "o")
    res = runner.invoke(app, ["suite", str(suites), "--out", out, "--format", "json"])
    assert res.exit_code == 0, res.output
    tables = json.loads(res.stdout)  # the runs' printout went to stderr
    assert list(tables) == ["g1", "g2"] and tables["g2"]["rows"][0]["name"].startswith("b-")
    assert "Model a train ended" in res.stderr
    res = runner.invoke(app, ["suite", str(suites), "--out", out, "--format", "json", "--dry-run"])
    assert res.exit_code == 0 and res.stdout == "" and "Suite g1: 1 runs" in res.stderr
    res = runner.invoke(app, ["suite", str(suites), "--out", out + "2", "--format", "csv", "-q"])
    lines = res.stdout.splitlines()
    assert lines[0].startswith("suite,name,") and len(lines) == 3
    assert lines[1].startswith("g1,a-") and lines[2].startswith("g2,b-")


def test_a_suite_pairs_its_seeds_and_can_vary_the_split(tmp_path):
    for name, l2 in (("a", 0), ("b", 0.01)):
        write(tmp_path / f"{name}.yaml", TINY.format(name=name, l2=l2))
    group = write(tmp_path / "mine.yaml", "doc: two tiny configs\nbaseline: a\nconfigs: [a.yaml, b.yaml]\n")
    base = ["suite", str(group), "--seeds", "3", "--format", "json", "-q", "--set", "train.threads=1"]
    fixed = runner.invoke(app, [*base, "--out", str(tmp_path / "fixed")])
    varied = runner.invoke(app, [*base, "--out", str(tmp_path / "varied"), "--vary-split"])
    assert fixed.exit_code == 0 and varied.exit_code == 0, fixed.output + varied.output
    for res in (fixed, varied):  # the configs of a suite share their seeds: the paired test
        rows = json.loads(res.stdout)["rows"]
        assert [(r["name"], r["n"]) for r in rows] == [("a", 3), ("b", 3)] and rows[1]["test"].startswith(
            ("paired t", "exact sign-flip")
        )
    splits = {load_run(p).config["data"]["seed"] for p in (tmp_path / "varied" / "mine").iterdir()}
    assert splits == {1234, 1235, 1236}  # data.seed = seed
    assert {load_run(p).config["data"]["seed"] for p in (tmp_path / "fixed" / "mine").iterdir()} == {0}
