"""Hostile files (issue 25): alias bombs, deep nesting, special files, damaged run directories. Configs fail
with one bounded line before anything is built; readers skip a bad run with a warning naming it and show
the rest. The red-team's generators run here as hypothesis fuzz tests, bounded to stay fast."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny, write
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rundirs import fake_run, metrics_rows
from typer.testing import CliRunner

from regbench.analysis.selection import collect_runs
from regbench.cli.main import app
from regbench.core import cgroups
from regbench.core import resources as resmod
from regbench.core.errors import ConfigError, RunDirError
from regbench.core.schema import describe, load_yaml
from regbench.resolve import load_config
from regbench.rundir import config_yaml, load_run

cli = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
GOOD = "data: {name: synthetic, count: 60, classes: 3}\nmodel: {layers: [8]}\n"


# ----------------------------------------------------------------------------------------------- generators
def alias_bomb(levels: int, fanout: int) -> tuple[str, str]:
    """YAML anchors `a0 … aN`, each a list of `fanout` aliases of the one before: the last expands to
    fanout**levels values. Returns (the anchor lines, the alias of the last one)."""
    lines = [f"b0: &a0 [{', '.join(['x'] * fanout)}]"]
    for i in range(1, levels):
        lines.append(f"b{i}: &a{i} [{', '.join([f'*a{i - 1}'] * fanout)}]")
    return "\n".join(lines), f"*a{levels - 1}"


def bomb_config(levels: int, fanout: int, where: str) -> str:
    """A config whose key `where` (or an extra top-level key, for `extra`) holds an alias bomb."""
    anchors, alias = alias_bomb(levels, fanout)
    body = {
        "train.epochs": f"train: {{epochs: {alias}}}",
        "name": f"name: {alias}",
        "seed": f"seed: {alias}",
        "keep_prob": f"model: {{layers: [[dropout, {{keep_prob: {alias}}}], 8]}}",
        "extra": f"extra: {alias}",
    }[where]
    # the anchors live under an extra key of their own: the config is rejected either way, never expanded
    return "anchors:\n" + "\n".join("  " + line for line in anchors.splitlines()) + "\n" + body + "\n"


def deep_yaml(depth: int, flow: bool) -> str:
    if flow:
        return "model: {layers: " + "[" * depth + "8" + "]" * depth + "}\n"
    return "".join("  " * i + f"k{i}:\n" for i in range(depth)) + "  " * depth + "v: 1\n"


def nested_serial(depth: int) -> dict:
    entry: list = [8]
    for _ in range(depth):
        entry = ["serial", [entry]]
    return {"data": {"name": "synthetic", "count": 60, "classes": 3}, "model": {"layers": [entry]}}


def one_line(e: BaseException, limit: int = 400) -> str:
    text = str(e)
    assert "\n" not in text and len(text) < limit, text
    return text


# ----------------------------------------------------------------------------------------------- configs
@pytest.mark.parametrize("where", ["train.epochs", "name", "seed", "keep_prob", "extra"])
def test_an_alias_bomb_anywhere_in_a_config_is_one_short_line(tmp_path, where):
    """9**9 values once expanded (before: describe repr'd the expanded value: minutes, gigabytes)."""
    path = write(tmp_path / "c.yaml", bomb_config(9, 9, where))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert "expands to more than" in one_line(e.value)


def test_an_alias_bomb_in_a_set_value_is_one_line():
    anchors, alias = alias_bomb(9, 9)
    with pytest.raises(ConfigError) as e:
        load_config({"data": {"name": "synthetic"}}, [f"train.epochs={{a: {anchors.splitlines()[0][4:]}, b: 1}}"])
    one_line(e.value)
    with pytest.raises(ConfigError) as e:
        load_yaml(anchors + f"\nx: {alias}\n", "--set x")
    assert "expands to more than" in one_line(e.value)


def test_describe_never_builds_the_whole_value():
    big = [list(range(1000))] * 10_000  # 10 million items: repr would take seconds and a gigabyte
    assert len(describe(big)) <= 60 and describe(big).endswith("...")
    assert describe({"a": "x" * 10**6}) == "{'a': '" + "x" * 50 + "..."
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    assert describe(deep).startswith("[[[[") and len(describe(deep)) <= 60  # repr itself: RecursionError


@pytest.mark.parametrize(
    "text",
    [deep_yaml(600, flow=True), deep_yaml(600, flow=False), "x: " + "[" * 100_000],
    ids=["flow-600", "block-600", "unclosed-100000"],
)
def test_deep_yaml_is_one_line(tmp_path, text):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path / "c.yaml", text))
    one_line(e.value)


def test_nested_blocks_and_a_deep_set_list_are_one_line():
    with pytest.raises(ConfigError) as e:
        load_config(nested_serial(200))
    one_line(e.value)
    with pytest.raises(ConfigError) as e:
        load_config({"data": {"name": "synthetic"}}, ["model.layers=" + "[" * 2000 + "8" + "]" * 2000])
    assert "nested more than" in one_line(e.value)


def test_an_unhashable_key_is_named_as_such(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path / "c.yaml", "train: {[1, 2]: 3}\n"))
    assert "is a list or mapping; keys must be plain values" in one_line(e.value)
    assert "tag" not in str(e.value)


@pytest.mark.skipif(not Path("/dev/zero").exists() or not hasattr(os, "mkfifo"), reason="POSIX special files")
def test_a_device_or_fifo_as_the_config_is_one_line(tmp_path):
    """Before: /dev/zero read until the OOM killer came, a FIFO blocked forever (hence the subprocess)."""
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = (
        "import sys\nfrom regbench import load_config, RegbenchError\nfor p in sys.argv[1:]:\n"
        "    try:\n        load_config(p)\n    except RegbenchError as e:\n        print(e)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, "/dev/zero", str(fifo)], env=env, capture_output=True, text=True, timeout=120
    )
    lines = res.stdout.splitlines()
    assert res.returncode == 0 and len(lines) == 2, res.stdout + res.stderr
    assert lines[0].startswith("/dev/zero: not a regular file") and lines[1].startswith(f"{fifo}: not a regular file")


def test_a_huge_config_file_is_refused_before_reading(tmp_path, monkeypatch):
    from regbench.core import safeload

    monkeypatch.setattr(safeload, "MAX_FILE_BYTES", 1000)
    monkeypatch.setattr(safeload.read_limited, "__defaults__", ("a file", 1000))
    path = write(tmp_path / "c.yaml", GOOD + "# padding\n" * 200)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert "more than the 1000 allowed" in one_line(e.value)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    levels=st.integers(3, 9),
    fanout=st.integers(2, 9),
    where=st.sampled_from(["train.epochs", "name", "seed", "keep_prob", "extra"]),
)
def test_fuzzed_alias_bombs_are_one_line(tmp_path_factory, levels, fanout, where):
    path = tmp_path_factory.mktemp("bomb") / "c.yaml"
    path.write_text(GOOD + bomb_config(levels, fanout, where).replace("anchors:", "anchors2:"), encoding="utf-8")
    try:
        load_config(path)
    except ConfigError as e:
        one_line(e)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(depth=st.integers(1, 3000), flow=st.booleans(), serial=st.integers(0, 300))
def test_fuzzed_nesting_is_built_or_one_line(tmp_path_factory, depth, flow, serial):
    path = tmp_path_factory.mktemp("deep") / "c.yaml"
    path.write_text(GOOD + deep_yaml(depth, flow).replace("model:", "extra:"), encoding="utf-8")
    for source in (path, nested_serial(serial)):
        try:
            load_config(source)
        except ConfigError as e:
            one_line(e)


# ----------------------------------------------------------------------------------------------- readers
def hostile_runs(root: Path) -> dict[str, Path]:
    """Three good runs and one of each hostile kind found by the red team."""
    for seed in (1, 2, 3):
        fake_run(root / f"good-{seed}", seed=seed, metrics=metrics_rows([0.5, 0.6]), summary={"test_acc": 0.6})
    bad = {}
    bad["bomb"] = fake_run(root / "bomb", metrics=metrics_rows([0.5]))
    anchors, alias = alias_bomb(9, 9)
    cfg = config_yaml(tiny().to_dict())
    (bad["bomb"] / "config.yaml").write_text(cfg + anchors + f"\nbomb: {alias}\n")
    bad["deep"] = fake_run(root / "deep", metrics=metrics_rows([0.5]))
    (bad["deep"] / "summary.json").write_text('{"status": "completed", "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    bad["binary"] = fake_run(root / "binary")
    (bad["binary"] / "metrics.jsonl").write_bytes(os.urandom(4000).replace(b"\n", b"") + b"\n" + os.urandom(100))
    bad["keys"] = fake_run(root / "keys", metrics=metrics_rows([0.5]))
    (bad["keys"] / "config.yaml").write_text(cfg + "1: one\n")  # int and str keys: not sortable
    return bad


def test_load_run_refuses_each_hostile_run_with_one_line(tmp_path):
    bad = hostile_runs(tmp_path)
    for name in ("bomb", "deep", "binary"):
        with pytest.raises(RunDirError) as e:
            load_run(bad[name])
        assert str(bad[name]) in one_line(e.value, 600)
    assert load_run(bad["keys"]).config[1] == "one"


def test_compare_and_report_skip_hostile_runs_and_show_the_rest(tmp_path):
    """Before: the alias bomb cost 41 s and 6 GB in compare's grouping; the deep summary was a RecursionError
    and none of the other runs were shown."""
    hostile_runs(tmp_path / "runs")
    res = cli.invoke(app, ["compare", str(tmp_path / "runs"), "-f", "csv"])
    assert res.exit_code == 0, res.output
    for name in ("bomb", "deep", "binary"):
        assert any(line.startswith("warning: skipped") and f"/{name}/" in line for line in res.output.splitlines())
    assert "\ntiny,3,synthetic," in res.output and "\nkeys,1," in res.output  # the good runs, grouped
    runs, warnings = collect_runs([tmp_path / "runs"])
    assert sorted(r.name for r in runs) == ["good-1", "good-2", "good-3", "keys"] and len(warnings) == 3
    res = cli.invoke(app, ["report", str(tmp_path / "runs"), "-o", str(tmp_path / "report.md")])
    assert res.exit_code == 0 and "Traceback" not in res.output, res.output


hostile_bytes = st.one_of(
    st.binary(max_size=300),
    st.integers(1, 20_000).map(lambda n: ("[" * n + "]" * n).encode()),
    st.integers(1, 20_000).map(lambda n: ('{"a":' * n + "1" + "}" * n).encode()),
    st.tuples(st.integers(2, 9), st.integers(2, 9)).map(lambda t: "\n".join(alias_bomb(*t)).encode()),
    st.text(max_size=200).map(str.encode),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(file=st.sampled_from(["config.yaml", "summary.json", "metrics.jsonl"]), data=hostile_bytes)
def test_fuzzed_run_files_never_take_the_readers_down(tmp_path_factory, file, data):
    root = tmp_path_factory.mktemp("runs")
    fake_run(root / "good", metrics=metrics_rows([0.5]))
    fake_run(root / "hostile", metrics=metrics_rows([0.5]))
    (root / "hostile" / file).write_bytes(data)
    runs, warnings = collect_runs([root])
    assert "good" in [r.name for r in runs]
    assert len(runs) + len(warnings) == 2 and all("\n" not in w for w in warnings)
    from regbench.analysis.aggregation import make_rows

    make_rows(runs, warnings=[])  # grouping (json of the configs) copes with whatever was read


# ----------------------------------------------------------------------------------------------- resources
def test_the_memory_check_counts_activations():
    """A 64-channel conv on 4096×4096 images: 2.6 M parameters, but each sample's activations take 4 GiB."""
    doc = {
        "data": {"name": "synthetic", "shape": [4096, 4096, 1], "count": 20, "classes": 2},
        "model": {"layers": [["conv", {"ksize": 3, "chn": 64}], ["max", {"stride": 64}], 10]},
    }
    with pytest.raises(ConfigError) as e:
        load_config(doc)
    assert "activations for batches of 10" in one_line(e.value) and "model.layers" in str(e.value)


def test_the_memory_check_counts_the_data_against_available_memory(monkeypatch):
    monkeypatch.setattr(resmod, "meminfo_available", lambda: 8 * 2**30)
    monkeypatch.setattr(resmod, "cgroup_memory_headroom", lambda: None)
    doc = {"data": {"name": "synthetic", "shape": [16, 16, 1], "count": 10_000_000, "classes": 2}}
    with pytest.raises(ConfigError) as e:
        load_config(doc)
    assert "data.count" in one_line(e.value) and "8.0 GiB available" in str(e.value)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_a_memory_cgroup_limit_is_respected(tmp_path, monkeypatch, version):
    if version == "v2":
        write(tmp_path / "memory.max", str(2**30))
        write(tmp_path / "memory.current", str(2**29))
    else:
        (tmp_path / "memory").mkdir()
        write(tmp_path / "memory" / "memory.limit_in_bytes", str(2**30))
        write(tmp_path / "memory" / "memory.usage_in_bytes", str(2**29))
    monkeypatch.setattr(cgroups, "CGROUP_ROOT", str(tmp_path))
    assert cgroups.cgroup_memory_headroom() == 2**29
    doc = {"data": {"name": "synthetic", "shape": [16, 16, 1], "count": 1_000_000, "classes": 2}}  # ~3 GiB
    with pytest.raises(ConfigError) as e:
        load_config(doc)
    assert "0.5 GiB left under this process's memory cgroup limit" in one_line(e.value)


def test_threads_are_bounded_by_the_usable_cores(tmp_path, monkeypatch):
    with pytest.raises(ConfigError) as e:
        load_config({"data": {"name": "synthetic"}, "train": {"threads": 100_000}})
    assert "train.threads: must be at most the" in one_line(e.value)
    write(tmp_path / "cpu.max", "150000 100000")  # a quota of 1.5 CPUs → 2 threads at most
    monkeypatch.setattr(cgroups, "CGROUP_ROOT", str(tmp_path))
    cgroups.usable_cores.cache_clear()
    try:
        assert cgroups.usable_cores() == min(2, len(os.sched_getaffinity(0)))
    finally:
        cgroups.usable_cores.cache_clear()


def test_sweep_status_copes_with_a_hostile_summary(tmp_path):
    from regbench.experiments.sweep import load_sweep, run_sweep

    spec = write(
        tmp_path / "s.yaml",
        "name: s\nbase:\n  data: {name: synthetic, count: 60, classes: 3}\n  model: {layers: [8]}\n"
        "  train: {epochs: 1, batch_size: 10, show: 0, threads: 1}\nparams:\n  optimizer.lr: [0.01, 0.02]\n",
    )
    run_sweep(load_sweep(spec), tmp_path / "out", workers=0, say=lambda line: None)
    runs = sorted((tmp_path / "out" / "s").glob("s-t*-s1"))
    (runs[0] / "summary.json").write_text('{"status": ' + "[" * 100_000 + "]" * 100_000 + "}")
    res = cli.invoke(app, ["sweep", "--status", str(tmp_path / "out" / "s")])
    assert res.exit_code == 0 and "Traceback" not in res.output, res.output
