"""The CLI wiring: commands call the library, and bad input is one line on stderr with exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import write
from typer.testing import CliRunner

from regbench.cli.main import app
from regbench.rundir import load_run

runner = CliRunner()

TINY = """
name: cli_tiny
data: {name: synthetic, count: 100, classes: 3}
model: {layers: [[conv, {ksize: 3, chn: 4}], [max, {stride: 2}], 8]}
train: {epochs: 1, show: 1}
"""


def test_train_writes_a_run_and_applies_overrides(tmp_path):
    cfg = write(tmp_path / "c.yaml", TINY)
    res = runner.invoke(
        app,
        [
            "train",
            str(cfg),
            "--set",
            "train.epochs=2",
            "-s",
            "optimizer.lr=0.01",
            "--out",
            str(tmp_path / "r"),
            "--lang",
            "en",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "Model cli_tiny test report: accuracy = " in res.output and "estimated distribution" in res.output
    (path,) = (tmp_path / "r").iterdir()
    run = load_run(path)
    assert run.status == "completed" and run.config["train"]["epochs"] == 2 and run.config["optimizer"]["lr"] == 0.01
    assert f"Run saved in {path}" in res.output


def test_train_calls_the_library_with_the_resolved_config(tmp_path, monkeypatch):
    from regbench.training import execute as trainer

    seen = {}

    def fake_train(cfg, out, **kw):
        seen.update(cfg=cfg, out=out, **kw)
        raise SystemExit(0)

    monkeypatch.setattr(trainer, "train", fake_train)
    runner.invoke(app, ["train", str(write(tmp_path / "c.yaml", TINY)), "-q", "--out", "elsewhere"])
    assert (
        seen["cfg"].name == "cli_tiny"
        and str(seen["out"]) == "elsewhere"
        and seen["quiet"] is True
        and seen["lang"] == "ko"
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("train: {epochs: 0}\n", "train.epochs: must be between 1 and 1000000, got 0"),
        (
            "model: {layers: [[dropout, {keep_prob: 0}]]}\n",
            "model.layers[0].keep_prob: must be in (0, 1], got 0",
        ),
        ("model: {layers: [[pool, {stride: 2}]]}\n", "model.layers[0]: unknown layer type 'pool'"),
        (
            "model: {layers: [[max, {stride: 3}]]}\n",
            "model.layers[0]: max: stride 3×3 does not divide the input size 8×8",
        ),
        ("trian: {}\n", "trian: unknown key 'trian' (did you mean 'train'?)"),
    ],
)
def test_bad_config_is_one_line_and_exit_2(tmp_path, text, message):
    cfg = write(tmp_path / "bad.yaml", text)
    out = tmp_path / "runs"
    for cmd in ("train", "validate", "show"):
        res = runner.invoke(app, [cmd, str(cfg)] + (["--out", str(out)] if cmd == "train" else []))
        assert res.exit_code == 2, res.output
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {cfg}: ") and message in lines[0], res.output
    assert not out.exists()


def test_missing_file_and_bad_override(tmp_path):
    res = runner.invoke(app, ["train", str(tmp_path / "none.yaml")])
    assert res.exit_code == 2 and "none.yaml: file not found" in res.output
    res = runner.invoke(app, ["validate", str(write(tmp_path / "c.yaml", TINY)), "--set", "train.epochs"])
    assert res.exit_code == 2 and "expected KEY.PATH=VALUE" in res.output


def test_validate_and_show(tmp_path):
    res = runner.invoke(app, ["validate", str(write(tmp_path / "c.yaml", TINY))])
    assert res.exit_code == 0 and res.output.startswith("ok: ")
    flowers = write(
        tmp_path / "f.yaml",
        "data: {name: synthetic, shape: [96, 96, 3], classes: 5}\nmodel: {layers: [30, 10]}\n",
    )
    res = runner.invoke(app, ["show", str(flowers)])
    assert res.exit_code == 0 and "829,790" in res.output and "96×96×3" in res.output


def test_real_process_prints_no_traceback(tmp_path):
    cfg = write(tmp_path / "bad.yaml", "optimizer: {name: adamm}\n")
    p = subprocess.run(
        [sys.executable, "-m", "regbench", "train", str(cfg)], capture_output=True, text=True, cwd=tmp_path
    )
    assert p.returncode == 2
    assert p.stdout == "" and p.stderr.count("\n") == 1 and "optimizer.name: unknown optimizer 'adamm'" in p.stderr
    assert "Traceback" not in p.stderr


def test_version_and_help():
    assert runner.invoke(app, ["--version"]).output.startswith("regbench ")
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0 and all(c in res.output for c in ("train", "validate", "show"))


def test_a_closed_output_pipe_does_not_fail_the_run(tmp_path):
    """`regbench train … | head -1`: the reader leaves early; the run trains on and completes."""
    cfg = write(tmp_path / "c.yaml", TINY.replace("epochs: 1", "epochs: 3"))
    cmd = f"{sys.executable} -m regbench train {cfg} --out {tmp_path / 'r'} | head -1; exit ${{PIPESTATUS[0]}}"
    p = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "Model cli_tiny train started:\n" and "Error" not in p.stderr
    (run_dir,) = (tmp_path / "r").iterdir()
    assert load_run(run_dir).status == "completed"


@pytest.mark.parametrize(
    "args, message",
    [
        (["compare", "runs", "--format", "xml"], "Invalid value for '--format'"),
        (["traing"], "No such command 'traing'"),
        (["train", "c.yaml", "--stack", "0"], "Invalid value for '--stack'"),
    ],
)
def test_usage_errors_are_one_line_too(tmp_path, args, message):
    p = subprocess.run([sys.executable, "-m", "regbench", *args], capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("error: ") and message in p.stderr


def test_missing_data_files_name_the_config(tmp_path):
    cfg = write(tmp_path / "m.yaml", "data: {name: mnist, root: nowhere}\nmodel: {layers: [10]}\n")
    res = runner.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and res.output.startswith(f"error: {cfg}: data set 'mnist': missing")
    assert not (tmp_path / "r").exists()
