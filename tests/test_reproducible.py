"""A seed's numbers do not depend on how or where it was scheduled: beside 1 or 3 other runs (of its own
config or others), on a quiet or a busy machine; alone and side by side give statistically indistinguishable
seed distributions and say which engine ran; the BN note; the per-member share of a pass's time."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import tiny

import regbench
from regbench import api
from regbench.core.resources import usable_cores
from regbench.core.stats import welch
from regbench.training.execute import train_group
from regbench.training.predictions import correct_on_test

TIMINGS = ("epoch_s", "total_s", "steps_s", "eval_s")


def numbers(run) -> list:
    """Every metric of every epoch but the timings, then the test results."""
    rows = [[m[k] for k in sorted(m) if k not in TIMINGS] for m in run.metrics]
    return [*rows, run.summary["test_loss"], run.summary["test_acc"], run.summary["best_val_acc"]]


@pytest.mark.parametrize("threads", [1, 2])
def test_a_seed_beside_1_or_3_others_has_identical_metrics(tmp_path, threads):
    pair = regbench.train(
        tiny(seed=11, optimizer__lr=0.01, train__threads=threads), tmp_path / "two", seeds=[11, 12], quiet=True
    )
    # a stack of 4 as a suite or sweep builds it: other configs (learning rates) and other seeds beside it
    cfgs = [tiny(seed=s, optimizer__lr=lr, train__threads=threads) for s, lr in ((5, 0.02), (11, 0.01), (7, 0.01))]
    cfgs.insert(2, tiny(seed=11, optimizer__lr=0.03, train__threads=threads))
    four = train_group(cfgs, tmp_path / "four", quiet=True)
    assert pair[0].summary["engine"] == "side by side with 2 members"
    assert four[1].summary["engine"] == "side by side with 4 members" and four[1].config["seed"] == 11
    assert numbers(four[1]) == numbers(pair[0])  # bit-identical, not approximately
    assert (correct_on_test(four[1].path)[1] == correct_on_test(pair[0].path)[1]).all()


def test_the_same_command_on_a_quiet_and_a_busy_machine_gives_identical_metrics(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cfg = tiny(seed=3, train__threads=None)  # the default thread count: what the load used to change
    quiet = regbench.train(cfg, tmp_path / "quiet", quiet=True)
    spin = "import time\nend = time.time() + 60\nwhile time.time() < end: pass"
    hogs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(os.cpu_count() or 1)]
    try:
        busy = regbench.train(cfg, tmp_path / "busy", quiet=True)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert quiet.summary["threads"] == busy.summary["threads"] == usable_cores()
    assert numbers(busy) == numbers(quiet)


def test_alone_and_side_by_side_give_indistinguishable_seed_distributions(tmp_path):
    seeds = list(range(1, 9))
    alone = [regbench.train(tiny(seed=s), tmp_path / "alone", quiet=True) for s in seeds]
    stacked = regbench.train(tiny(seed=1), tmp_path / "stacked", seeds=seeds, quiet=True)
    assert {r.summary["engine"] for r in alone} == {"alone"} and {r.summary["members"] for r in stacked} == {8}
    for metric in ("test_acc", "best_val_acc", "test_loss"):
        a, b = [r.summary[metric] for r in alone], [r.summary[metric] for r in stacked]
        outcome = welch(a, b)
        assert outcome.p is None or outcome.p > 0.5, metric  # rounding differences, far from any real effect
    comp = regbench.compare([r.path for r in alone[:4] + stacked[4:]])  # one seed group, two engines
    assert comp.rows[0].n == 8 and any("tiny mixes engines (alone 1t, ×8 1t)" in w for w in comp.warnings)


def test_a_member_side_by_side_records_the_pass_time_and_its_share(tmp_path):
    runs = regbench.train(tiny(seed=1), tmp_path, seeds=3, quiet=True)
    for run in runs:
        s = run.summary
        assert s["members"] == 3 and s["train_s_share"] == pytest.approx(s["train_s"] / 3)
    comp = regbench.compare([tmp_path], columns="train_s_share,engine")
    assert comp.header("train_s_share") == "train s/member" and comp.rows[0].values["engine"] == "×3 1t"


BN_LAYERS = [["conv", {"ksize": 3, "chn": 4}], ["batch_normal", {"exp_ratio": "RATIO"}], ["max", {"stride": 2}], 16]


def bn_tiny(ratio: float, **over):
    layers = [[e[0], {"exp_ratio": ratio}] if e[0] == "batch_normal" else e for e in BN_LAYERS[:-1]] + [16]
    return tiny(model__layers=layers, train__batch_size=5, train__epochs=3, **over)


def test_the_bn_note_appears_for_the_books_exp_ratio_on_a_short_run_and_not_for_0_1(tmp_path, capsys):
    slow = regbench.train(bn_tiny(0.001), tmp_path, quiet=False, lang="en")
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip()]
    note = lines[[i for i, line in enumerate(lines) if "test report" in line][0] + 1]  # right after the report
    assert note.startswith("Note: batch_normal's running averages still hold")
    record = slow.summary["bn_unconverged"]
    steps = slow.summary["steps_done"]
    assert record["exp_ratio"] == 0.001 and record["initial_share"] == pytest.approx(0.999**steps, abs=1e-4)
    assert "BN averages" in regbench.compare([tmp_path]).rows[0].values["notes"]
    made = api.report([slow.path], tmp_path / "report", columns="name,test_acc,train_s_share,notes", samples=0)
    text = made.md.read_text(encoding="utf-8")
    assert "BN averages 95% initial" in text and "train s/member" in text
    fast = regbench.train(bn_tiny(0.1), tmp_path / "fast", quiet=False, lang="ko")
    assert "bn_unconverged" not in fast.summary and "batch_normal" not in capsys.readouterr().out
    assert 0.9 ** fast.summary["steps_done"] < 0.05
    ko = regbench.train(bn_tiny(0.001), tmp_path / "ko", quiet=False, lang="ko")
    assert ko.summary["bn_unconverged"] and "이동 평균" in capsys.readouterr().out
