"""The training loop: one model alone or K side by side, the same code (only the engine differs).

`fit` reads top to bottom: set up the engine and one `Member` (run directory, summary, log) per model, then
per epoch the hot loop (`run_epoch`: data on the device, losses and correct counts kept there), one host sync
for the epoch's sums, evaluation, each member's bookkeeping and checkpoints; then the test phase. A member that
diverges, stops early or is stopped by its callback is frozen while the others go on.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import Config
from ..core import console
from ..core.errors import DivergedError
from ..core.provenance import one_reading
from ..core.signals import shielded
from ..nn.model import Net
from .diagnostics import bn_residue, engine_record
from .engines import Solo, Stacked, make_engine
from .member import EpochStats, Member, TestResult, status_of
from .plan import Batches, Plan, Setup
from .resume_check import check_checkpoint, restore_checked, steps_after

OnEpoch = Callable[[dict[str, Any]], None] | None


@dataclass
class Fitted:
    net: Net | None  # None for a run read back, not trained
    summary: dict[str, Any]
    test_probs: list[torch.Tensor] | None  # per head, (N_test, classes)
    path: Path  # the run directory
    # what the run directory now holds, as written (None for a run read back): config.yaml and metrics.jsonl
    config: dict[str, Any] | None = None
    metrics: list[dict[str, Any]] | None = None


def fit(
    cfgs: list[Config],
    setup: Setup,
    paths: list[Path],
    say: console.Printer,
    lang: str,
    *,
    ckpt: dict[str, Any] | None = None,
    callbacks: list[OnEpoch] | None = None,
    report_test: bool = True,
) -> list[Fitted]:
    """Train `cfgs` (one config, or K that can stack) into their run directories `paths`.

    Alone, the run prints the book's report on `say`; side by side, each member's report goes to its own
    log.txt and `say` gets one epoch line per config and a test line per member. A checkpoint (model,
    optimizer, random states, metrics so far) is written at least after the last epoch; with `ckpt` (one read
    back by `resume`, alone only) training continues after its epoch and ends exactly as an uninterrupted run.
    `callbacks[m](row)` (a sweep's pruner) is called with member m's metrics row after each epoch; an
    exception from it stops that member (status `pruned` for `Pruned`, else `failed`). A run alone that
    diverges raises DivergedError after its files are written; side by side, the member is marked diverged.
    """
    k, cfg = len(cfgs), cfgs[0]
    tc = cfg.train
    engine = make_engine(cfgs, setup)
    plan = Plan.of(cfg, setup.splits["train"].n)
    train_set, val_set, test_set = setup.splits["train"], setup.splits["val"], setup.splits["test"]
    says = [say] if k == 1 else [console.Printer(True) for _ in cfgs]  # side by side: each run's own log
    if ckpt is not None:  # checked and restored before anything in the run directory is rewritten
        assert isinstance(engine, Solo), "a checkpoint continues one run alone"
        check_checkpoint(ckpt, cfg, paths[0], plan.epochs, steps_after(plan, ckpt.get("epoch")))
        restore_checked(engine, ckpt, paths[0])
    with one_reading():  # the members share one git reading for their provenance
        members = [Member(c, setup, p, s, plan.epochs, ckpt) for c, p, s in zip(cfgs, paths, says, strict=True)]
    for member in members:
        member.summary.setdefault("lang", lang)  # a resumed run goes on printing in its own language
        if k > 1:
            member.summary["side_by_side"] = k
        member.summary.update(engine_record(k))
    callbacks = callbacks or [None] * k
    final: dict[int, tuple[dict, dict]] = {}  # member → (last weights, tested weights) once it stops
    lines = EpochLines(cfgs, members, say)
    if ckpt is None and (note := setup.data.norm.get("note")):  # summary.json has it in `normalization`
        for printer in dict.fromkeys([say, *says]):
            printer(f"note: {note}")
    try:
        if tc.report > 0 and ckpt is None:
            lines.started()
        last_round, round_cost = time.perf_counter(), 0.0
        with Progress(say.quiet, plan.steps) as progress:
            for epoch in range(members[0].first_epoch, plan.epochs + 1):
                # ---- train one epoch: losses, correct counts and gradient norms stay on the device
                t_epoch = time.perf_counter()
                start, n_steps = plan.start(epoch), plan.steps_in(epoch)
                losses, correct, norms = run_epoch(engine, plan, train_set, epoch=epoch, progress=progress)
                # ---- once per epoch: read the sums (the only host sync of the epoch), evaluate, log
                costs = [s / n_steps for s in losses.sum(1).tolist()]  # float64 division, as the book's
                if epoch == 1:  # the scale an exploding loss is measured against (kept in the summary for resume)
                    for member, first in zip(members, losses[:, 0].tolist(), strict=True):
                        if math.isfinite(first):
                            member.summary["first_loss"] = first
                t_steps = time.perf_counter()
                live = [m for m, mb in enumerate(members) if mb.active and not mb.explodes(costs[m])]
                if live:
                    train_acc = (correct.double() / plan.seen(n_steps)).tolist()
                    val_loss, val_acc = engine.evaluate(val_set)
                    if tc.eval_train:
                        tr_loss, tr_acc = engine.evaluate(train_set)
                    norm_rows = (norms / plan.sampled(n_steps)).tolist()
                t_eval = time.perf_counter()
                # checkpoints at most every checkpoint_every seconds (side by side, of all members together and never
                # costing more than 2% of the time: K members' checkpoints are K times one's); always after the last epoch
                since = time.perf_counter() - last_round
                every = tc.checkpoint_every if k == 1 else max(tc.checkpoint_every, 50 * round_cost)
                round_due = epoch == plan.epochs or tc.checkpoint_every <= 0 or since >= every
                ckpt_cost = 0.0
                for m, member in enumerate(members):
                    if not member.active:
                        continue
                    if member.explodes(costs[m]):  # non-finite or exploded: frozen; its last good checkpoint stays
                        member.active = False
                        member.close("diverged", member.diverged_message(epoch, start, losses[m]))
                        if k > 1:
                            say(
                                f"{member.cfg.name} (seed {member.cfg.seed}) diverged in epoch {epoch}; the other members go on"
                            )
                        engine.freeze(m)
                        continue
                    stats = EpochStats(
                        cost=costs[m],
                        train_acc=train_acc[m],
                        val_loss=val_loss[m],
                        val_acc=val_acc[m],
                        lr=engine.lr(m, plan.progress(start + n_steps - 1), plan.total_epochs),
                        grad_norm=norm_rows[m][0],
                        grad_norm_first=norm_rows[m][1],
                        t_epoch=t_epoch,
                        steps_s=t_steps - t_epoch,
                        eval_s=t_eval - t_steps,
                    )
                    if tc.eval_train:
                        stats.train_eval_loss, stats.train_eval_acc = tr_loss[m], tr_acc[m]
                    stop = member.end_epoch(epoch, start, losses[m], stats, lambda m=m: engine.state(m))
                    # ---- checkpoint: everything needed to continue after this epoch
                    if stop or round_due:
                        t_ckpt = time.perf_counter()
                        member.checkpoint(epoch, *engine.checkpoint_state(m), engine.rng(m))
                        ckpt_cost += time.perf_counter() - t_ckpt
                    if callbacks[m] is not None:
                        try:
                            callbacks[m](member.row)
                        except Exception as e:  # stopped by its callback (a pruner): this member alone
                            member.active = False
                            member.close(*status_of(e))
                            engine.freeze(m)
                            continue
                    if stop:  # early stop: keep its weights from here on, frozen
                        member.active = False
                        final[m] = stopped_weights(engine, m, member)
                        engine.freeze(m)
                if round_due:
                    last_round, round_cost = time.perf_counter(), ckpt_cost
                if tc.report > 0 and epoch % tc.report == 0:
                    lines.epoch(epoch, costs, train_acc if live else None, val_acc if live else None)
                if not any(mb.active for mb in members):
                    break

        # -------------------------------------------------------------------------------- test and report
        testing = [m for m, mb in enumerate(members) if mb.summary["status"] == "running"]
        for m in testing:
            members[m].end_training()
            final[m] = final.get(m) or stopped_weights(engine, m, members[m])
            engine.load_state(m, final[m][1])  # the tested weights: the best epoch's with test_on: best
        fitted = [Fitted(engine.net, mb.summary, None, mb.path, mb.cfg.to_dict(), mb.writer.rows) for mb in members]
        if testing:
            t_test = time.perf_counter()
            test_loss, test_acc = engine.evaluate(test_set)
            probs = engine.probabilities(test_set.x) if test_set.n else [None] * k
            test_s = time.perf_counter() - t_test
            answers = test_set.y.cpu()
            for m in testing:
                member = members[m]
                result = TestResult(
                    test_loss[m],
                    test_acc[m],
                    probs[m],
                    answers,
                    test_s,
                    engine.param_stats(m),
                    engine.member_weights(m),
                    bn_residue(engine.net, member.summary["steps_done"]),
                )
                member.finish(*final[m], result, setup.info, lang, report_test)
                member.close()
                if k > 1:
                    say(
                        f"[seed {member.cfg.seed}] "
                        + console.test_report(member.cfg.name, result.acc or [math.nan], int(test_s)).rstrip()
                    )
                fitted[m] = Fitted(
                    engine.net, member.summary, probs[m], member.path, member.cfg.to_dict(), member.writer.rows
                )
    except BaseException as e:
        status, error = status_of(e)
        with shielded():  # a second Ctrl-C/SIGTERM must not leave the summary `running`
            for m, member in enumerate(members):
                if member.summary["status"] == "running":
                    if status == "interrupted":
                        member.writer.save_model(engine.state(m))
                    member.close(status, error)
        raise
    if k == 1 and members[0].summary["status"] == "diverged":
        raise DivergedError(members[0].summary["error"])
    return fitted


def run_epoch(engine: Solo | Stacked, plan: Plan, data: Batches, *, epoch: int, progress: Progress):
    """The hot loop over one epoch's batches; returns device tensors only (no host sync here): per-member
    losses (K, steps), correct counts (K, heads), and the sums of (global, first-layer) gradient norms over the
    sampled steps (K, 2). Per step only the loss and the predicted classes are kept; they are compared with the
    labels once, at the end."""
    start, n_steps, bs = plan.start(epoch), plan.steps_in(epoch), plan.batch_size
    engine.net.train()
    progress.start(epoch)
    perms = engine.permutations(data.n)
    losses, preds = [], []
    norms = torch.zeros(engine.k, 2, device=data.y.device)
    for step in range(n_steps):
        if engine.scheduled:
            engine.set_lr(plan.progress(start + step), plan.total_epochs)
        x, y = engine.batch(data, perms, step * bs, (step + 1) * bs)
        loss, pred, step_norms = engine.step(x, y, step % plan.norm_every == 0)
        if step_norms is not None:
            norms += step_norms.view(engine.k, 2)
        losses.append(loss)
        preds.append(pred)
        progress.advance(step)
    step_losses, correct = engine.epoch_results(losses, preds, data, perms)
    return step_losses, correct, norms


def stopped_weights(engine: Solo | Stacked, m: int, member: Member) -> tuple[dict, dict]:
    """(last weights, tested weights) of member m now: tested = best epoch's with test_on: best."""
    last = engine.state(m)
    tested = member.best_state if member.cfg.train.test_on == "best" and member.best_state is not None else last
    return last, tested


class EpochLines:
    """What the console shows while runs train. Alone: the book's lines (the member prints them). Side by side:
    one epoch line per config — the mean over its seeds — never a mean over different configs."""

    def __init__(self, cfgs: list[Config], members: list[Member], say: console.Printer):
        self.members, self.say = members, say
        groups: dict[str, list[int]] = {}
        for m, c in enumerate(cfgs):
            groups.setdefault(repr({**c.to_dict(), "seed": None}), []).append(m)
        self.groups = list(groups.values())
        self.t0, self.tick_report = time.perf_counter(), 0  # one integer clock, as Member's lines

    def started(self) -> None:
        if len(self.members) == 1:
            self.say(console.train_started(self.members[0].cfg.name))
            return
        names = ", ".join(dict.fromkeys(mb.cfg.name for mb in self.members))
        self.say(f"Model {names} train started ({len(self.members)} models side by side):")
        for member in self.members:  # each run's own log.txt reads as if it had trained alone
            member.say(console.train_started(member.cfg.name))

    def epoch(self, epoch: int, costs: list[float], train_acc: list | None, val_acc: list | None) -> None:
        if len(self.members) == 1:
            return  # the member printed the book's line
        now = time.perf_counter()
        total = int(now - self.t0)
        secs, self.tick_report = total - self.tick_report, total
        for group in self.groups:
            live = [m for m in group if self.members[m].active or self.members[m].summary.get("stopped_early") == epoch]
            if train_acc is None or val_acc is None:  # every member diverged in this epoch
                live = []
            name = self.members[group[0]].cfg.name
            if not live:
                self.say(f"    Epoch {epoch}: {name}: no member is training")
                continue
            cost = sum(costs[m] for m in live) / len(live)
            train = _mean([train_acc[m] for m in live]) or [math.nan]
            line = console.epoch_line(epoch, cost, train, _mean([val_acc[m] for m in live if val_acc[m]]), secs, total)
            label = f"mean of {len(live)} seeds" if len(live) > 1 else f"seed {self.members[live[0]].cfg.seed}"
            self.say(f"{line} {name} ({label})" if len(self.groups) > 1 else f"{line} ({label})")


def _mean(rows: list[list[float]]) -> list[float] | None:
    return [sum(col) / len(col) for col in zip(*rows, strict=True)] if rows else None


class Progress:
    """A Rich progress bar for the batches of an epoch, shown only on a terminal; updates cost no device sync."""

    def __init__(self, quiet: bool, steps: int):
        self.bar = None
        self.every = max(1, steps // 50)
        if not quiet and sys.stdout.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self.bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                transient=True,
            )
            self.task = self.bar.add_task("train", total=steps)

    def __enter__(self) -> Progress:
        if self.bar:
            self.bar.start()
        return self

    def start(self, epoch: int) -> None:
        if self.bar:
            self.bar.update(self.task, completed=0, description=f"epoch {epoch}")

    def advance(self, step: int) -> None:
        if self.bar and (step + 1) % self.every == 0:
            self.bar.update(self.task, completed=step + 1)

    def __exit__(self, *exc) -> None:
        if self.bar:
            self.bar.stop()
