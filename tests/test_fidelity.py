"""Fidelity to the course: npz scaling, the chapter 8 printouts, the book's integer clock, the homework's
dropout, the book's plain split."""

from __future__ import annotations

import json
import re
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny
from datafiles import write_npz

import regbench
from regbench.data import load_data
from regbench.data.split import split_indices
from regbench.nn.modules import Dropout
from regbench.stacked.layers import StackedDropout

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


# ----------------------------------------------------------------------------------------------- npz scaling
def npz_data(path: Path, **data) -> dict:
    return {"name": "npz", "path": str(path), **data}


def test_npz_uint8_defaults_to_unit_and_float_to_none(tmp_path):
    u8 = write_npz(tmp_path / "u8.npz")  # uint8 pixels
    ds = load_data(regbench.load_config({"data": npz_data(u8)}).data)
    assert ds.norm["mode"] == "unit" and ds.x["train"].max() <= 1.0 and ds.x["train"].max() > 0.5
    with np.load(u8) as f:
        np.savez(tmp_path / "f.npz", x=(f["x"] / 255.0).astype(np.float32), y=f["y"])
    ds = load_data(regbench.load_config({"data": npz_data(tmp_path / "f.npz")}).data)
    assert ds.norm == {"mode": "none"}  # already scaled: no note
    raw = load_data(regbench.load_config({"data": npz_data(u8, normalize="none")}).data)
    assert raw.x["train"].max() > 100 and "inputs look unscaled" in raw.norm["note"]
    assert "unit (÷255)" in raw.norm["note"]


def test_unscaled_inputs_print_one_note_and_record_it(tmp_path, capsys):
    u8 = write_npz(tmp_path / "u8.npz")
    with np.load(u8) as f:
        np.savez(tmp_path / "raw.npz", x=f["x"].astype(np.float32), y=f["y"])  # 0–255 as float
    cfg = tiny(data=npz_data(tmp_path / "raw.npz"), train__epochs=1)
    run = regbench.train(cfg, tmp_path / "runs")
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and "inputs look unscaled" in notes[0] and "standardize or center" in notes[0]
    assert run.summary["normalization"]["note"] == notes[0].removeprefix("note: ")
    regbench.train(tiny(data=npz_data(tmp_path / "u8.npz"), train__epochs=1), tmp_path / "runs")
    assert "note: " not in capsys.readouterr().out  # uint8 → unit: nothing to say


# ----------------------------------------------------------------------------------------------- chapter 8
def exec_all_call(path: Path) -> str | None:
    comment = " ".join(line.lstrip("# ") for line in path.read_text().splitlines() if line.startswith("#"))
    m = re.search(r"exec_all\(([^)]*)\)", comment)
    return m.group(1) if m else None


@pytest.mark.parametrize("path", sorted((CONFIGS / "ch8").glob("*.yaml")), ids=lambda p: p.name)
def test_ch8_configs_report_as_the_books_exec_all_call(path):
    call = exec_all_call(path)
    if call is None:
        pytest.skip("no exec_all call quoted (a student report's run)")
    m = re.search(r"report=(\d+)", call)
    book_report = int(m.group(1)) if m else 0  # exec_all's default
    cfg = regbench.load_config(path)
    assert cfg.train.report == book_report
    assert cfg.data.split.stratify is False  # the book's plain shuffle


def test_flowers_mlp_l1_prints_the_books_lines_for_its_cell(tmp_path, capsys):
    """fm3.exec_all(epoch_count=10, show_cnt=0, show_params=True): train ended, test report, Near 0 — nothing
    else (the photos stand in as small synthetic images; the lines are the config's, not the data's)."""
    stand_in = {"name": "synthetic", "shape": [8, 8, 3], "classes": 5, "count": 100, "split": {"stratify": False}}
    cfg = regbench.load_config(CONFIGS / "ch8/flowers_mlp_l1_0.01.yaml", overrides={"data": stand_in})
    regbench.train(cfg, tmp_path / "runs", overrides={"train.epochs": 2, "train.threads": 1})
    out = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"Model flowers_mlp_l1_0\.01 train ended in \d+ secs:", out[0])
    assert re.fullmatch(r"Model flowers_mlp_l1_0\.01 test report: accuracy = \d\.\d{3}, \(\d+ secs\)", out[1])
    assert out[2] == "" and re.fullmatch(r"Near 0 parameters = [ \d]{2,3}\.\d%\(\d+/\d+\)", out[3])
    assert len(out) == 4  # (the CLI adds where the run was saved)


# ----------------------------------------------------------------------------------------------- integer clock
def fake_clock(monkeypatch, step: float = 0.7):
    """member.py's clock advances `step` seconds per reading, so lines have fractional seconds to round."""
    now = [1000.0]

    def perf_counter():
        now[0] += step
        return now[0]

    monkeypatch.setattr(
        "regbench.training.member.time", types.SimpleNamespace(perf_counter=perf_counter, strftime=time.strftime)
    )


def epoch_secs(lines: list[str]) -> list[tuple[int, int]]:
    return [
        tuple(map(int, m.groups())) for line in lines if (m := re.search(r"Epoch \d+: .*\((\d+)/(\d+) secs\)", line))
    ]


def test_epoch_seconds_add_up_to_the_total(runs, capsys, monkeypatch):
    fake_clock(monkeypatch)
    regbench.train(tiny(train__epochs=8, train__report=1), runs)
    secs = epoch_secs(capsys.readouterr().out.splitlines())
    assert len(secs) == 8 and secs[-1][1] >= 4  # ~0.7 s per epoch
    assert [sum(a for a, _ in secs[: i + 1]) for i in range(8)] == [b for _, b in secs]


def test_a_resumed_runs_first_line_counts_its_own_seconds(runs, capsys, monkeypatch):
    fake_clock(monkeypatch, step=1.3)
    run = regbench.train(tiny(train__epochs=2, train__report=1, train__checkpoint_every=0), runs)
    capsys.readouterr()
    regbench.resume(run.path, epochs=4)
    secs = epoch_secs(capsys.readouterr().out.splitlines())
    assert len(secs) == 2
    (a3, b3), (a4, b4) = secs
    assert a3 < b3  # the resumed part's own seconds, not the total since the first start
    assert b4 - b3 == a4 and json.loads((run.path / "summary.json").read_text())["epochs_done"] == 4


# ----------------------------------------------------------------------------------------------- DLFS dropout
def test_dlfs_dropout_masks_in_training_and_scales_in_evaluation():
    x = torch.rand(64, 50) + 1.0
    d = Dropout(0.8, scale="eval")
    d.generator = torch.Generator().manual_seed(0)
    y = d.train()(x)
    kept = y != 0
    assert torch.equal(y[kept], x[kept]) and 0.7 < kept.float().mean() < 0.9  # the mask alone, unscaled
    assert torch.allclose(d.eval()(x), x * 0.8)
    book = Dropout(0.8)  # the book's inverted dropout: ÷0.8 in training, identity in evaluation
    book.generator = torch.Generator().manual_seed(0)
    assert torch.allclose(book.train()(x)[kept], x[kept] / 0.8) and torch.equal(book.eval()(x), x)


def test_stacked_dlfs_dropout_scales_each_member_by_its_keep_prob():
    x = torch.rand(4, 2 * 3, 5, 5) + 1.0  # K=2 members of 3 channels
    d = StackedDropout([0.5, 0.8], scale="eval").eval()
    y = d(x)
    assert torch.allclose(y[:, :3], x[:, :3] * 0.5) and torch.allclose(y[:, 3:], x[:, 3:] * 0.8)


def test_dlfs_configs_use_the_homeworks_dropout():
    for name in ("digits_overfit_dropout", "fashion_overfit_dropout"):
        layers = regbench.load_config(CONFIGS / f"dlfs/{name}.yaml").model.layers
        drops = [e for e in layers if isinstance(e, list) and e[0] == "dropout"]
        assert len(drops) == 6 and all(e[1]["scale"] == "eval" and e[1]["keep_prob"] == 0.8 for e in drops)


# ----------------------------------------------------------------------------------------------- the book's split
def test_unstratified_split_is_the_books_plain_shuffle():
    y = torch.tensor([0] * 90 + [1] * 10).unsqueeze(1)
    plain = split_indices(y, 0.8, 0.05, seed=3, stratify=False)
    perm = np.random.default_rng(3).permutation(100)
    assert plain["train"].tolist() == perm[:80].tolist() and plain["val"].tolist() == perm[80:85].tolist()
    strat = split_indices(y, 0.8, 0.05, seed=3)
    assert int(y[strat["train"]].sum()) == 8  # stratified: 10% of the train split is class 1
    cfg = regbench.load_config({"data": {"name": "digits", "split": {"stratify": False}}})
    assert cfg.data.split.stratify is False and load_data(cfg.data).size("train") == 1430


def test_both_engines_train_the_books_epoch_on_the_books_split(runs):
    """Plain split and the book's epoch (the first ⌊N/batch⌋·batch samples of each shuffled order), alone and
    side by side: the same steps and the same numbers."""
    cfg = tiny(data__split={"stratify": False}, train__batch_size=7, train__epochs=2)
    alone = [regbench.train(cfg, runs / "alone", quiet=True, overrides={"seed": s}) for s in (5, 6)]
    stacked = regbench.train(cfg, runs / "stacked", quiet=True, seeds=[5, 6])
    for a, b in zip(alone, stacked, strict=True):
        assert a.summary["data"]["train"] == 90 and a.summary["steps_done"] == b.summary["steps_done"] == 2 * (90 // 7)
        assert b.summary.get("side_by_side") == 2
        assert a.summary["train_loss"] == pytest.approx(b.summary["train_loss"], rel=1e-4)
