"""One training engine: the Plan every engine follows, and what the console shows for runs side by side."""

from __future__ import annotations

import pytest
from conftest import tiny

import regbench
from regbench.core import console
from regbench.core.errors import Pruned
from regbench.training.execute import fit_all, train_group
from regbench.training.plan import GRAD_NORM_SAMPLES, Plan


@pytest.mark.parametrize(
    "n_train, batch, drop_last", [(120, 10, False), (95, 10, False), (95, 10, True), (7, 10, False)]
)
def test_the_plan_samples_at_most_the_promised_steps(n_train, batch, drop_last):
    plan = Plan.of(tiny(train__batch_size=batch, train__drop_last=drop_last, train__epochs=3), n_train)
    for epoch in range(1, plan.epochs + 1):
        n = plan.steps_in(epoch)
        sampled = [s for s in range(n) if s % plan.norm_every == 0]
        assert 1 <= len(sampled) == plan.sampled(n) <= GRAD_NORM_SAMPLES
    assert plan.seen(plan.steps) == (plan.steps * plan.batch_size if drop_last else n_train)


def test_iterations_end_inside_an_epoch():
    plan = Plan.of(tiny(train__iterations=25, train__batch_size=10), 120)  # 12 steps an epoch
    assert plan.epochs == 3 and [plan.steps_in(e) for e in (1, 2, 3)] == [12, 12, 1]
    assert plan.seen(1) == 10


def test_a_member_side_by_side_records_what_it_records_alone(runs):
    """Every metrics column, grad_norm and lr included (they were sampled on other steps side by side once)."""
    cfgs = [tiny(seed=5, train__epochs=3), tiny(seed=6, train__epochs=3)]
    together = train_group(cfgs, runs / "together", quiet=True)
    alone = regbench.train(cfgs[1], runs / "alone", quiet=True)
    a, b = together[1].metrics, alone.metrics
    assert [sorted(m) for m in a] == [sorted(m) for m in b]
    for ra, rb in zip(a, b, strict=True):
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "grad_norm", "grad_norm_first"):
            assert ra[key] == pytest.approx(rb[key], rel=2e-4, abs=1e-6), key


def test_epoch_lines_side_by_side_never_average_different_configs(runs, capsys):
    """Two configs that stack (they differ in L2 only), two seeds each: one epoch line per config, each the
    mean of its own seeds and named after it."""
    cfgs = [
        tiny(name=name, seed=seed, regularizer__l2_decay=l2, train__report=1)
        for name, l2 in (("plain", 0.0), ("l2", 0.1))
        for seed in (1, 2)
    ]
    train_group(cfgs, runs, quiet=False)
    out = capsys.readouterr().out
    epoch_lines = [line for line in out.splitlines() if line.strip().startswith("Epoch 1:")]
    assert len(epoch_lines) == 2, out
    assert epoch_lines[0].endswith("plain (mean of 2 seeds)") and epoch_lines[1].endswith("l2 (mean of 2 seeds)")
    costs = [float(line.split("cost=")[1].split(",")[0]) for line in epoch_lines]
    runs_by_name: dict[str, list[float]] = {"plain": [], "l2": []}
    for run in map(regbench.load_run, runs.iterdir()):
        runs_by_name[run.config["name"]].append(run.metrics[0]["train_loss"])
    for cost, name in zip(costs, ("plain", "l2"), strict=True):
        assert cost == pytest.approx(sum(runs_by_name[name]) / 2, abs=1e-3)


def test_a_seed_group_prints_one_line_per_epoch(runs, capsys):
    regbench.train(tiny(train__report=1), runs, seeds=3)
    out = capsys.readouterr().out
    assert out.count("Epoch 2:") == 1 and "(mean of 3 seeds)" in out


def test_runs_one_after_another_keep_their_own_logs(runs):
    """Each run's log.txt holds its own report, not the earlier runs' (they share the console, not the log)."""
    first, second = regbench.train(tiny(train__report=1), runs, seeds=2, stack=1, quiet=True)
    for run in (first, second):
        log = (run.path / "log.txt").read_text(encoding="utf-8")
        assert log.count("train started") == 1 and f"Model {run.config['name']}" in log


def test_seeds_of_an_ensemble_are_announced_and_stack_their_members(runs, capsys):
    regbench.train(tiny(train__ensemble=2, train__epochs=1), runs, seeds=2)
    out = capsys.readouterr().out
    assert "Seed 1/2 (seed 1234):" in out and "Seed 2/2 (seed 1235):" in out
    assert out.count("(2 models side by side)") == 2  # each ensemble's members train side by side


def test_a_pruned_run_resumes_from_its_checkpoint(runs):
    """A run its sweep pruned stays pruned for the sweep, and `resume` trains it on to the end as it would have."""
    cfg = tiny(train__epochs=3, train__checkpoint_every=0)
    path = runs / "pruned"
    path.mkdir(parents=True)

    def prune(row):
        if row["epoch"] == 1:
            raise Pruned("hopeless")

    fit_all([cfg], [path], console.Printer(True), "ko", callbacks=[prune], keep_going=True)
    pruned = regbench.load_run(path)
    assert pruned.status == "pruned" and pruned.summary["pruned"] == "hopeless" and "error" not in pruned.summary
    resumed = regbench.resume(path, quiet=True)
    assert resumed.status == "completed" and resumed.summary["epochs_done"] == 3
    full = regbench.train(cfg, runs / "full", quiet=True)
    assert [m["train_loss"] for m in resumed.metrics] == [m["train_loss"] for m in full.metrics]
