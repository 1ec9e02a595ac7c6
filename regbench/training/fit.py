"""The training loops: one model (`fit`) and K models side by side (`fit_stacked`)."""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import Config
from ..core import console as fmt
from ..core.errors import DivergedError, Pruned
from ..data.augment import make_augment
from ..nn.model import Net, build_model, init_weights, param_stats, relu_after_max, weights_and_kernels
from ..optim import lr_at, make_optimizer
from ..regularize import Regularizer
from ..stacked.layers import load_member_state, member_state
from ..stacked.optim import StackedOptimizer, StackedRegularizer
from .infer import (
    evaluate,
    evaluate_members,
    head_loss,
    head_predictions,
    member_losses,
    member_predictions,
    member_probabilities,
    probabilities,
    stack_input,
)
from .member import Member
from .plan import GRAD_NORM_SAMPLES, Setup, derive_seed, make_gens, match_layouts, rng_states, set_rng_states


@dataclass
class Fitted:
    net: Net
    summary: dict[str, Any]
    test_probs: list[torch.Tensor] | None  # per head, (N_test, classes)


def fit(
    cfg: Config,
    setup: Setup,
    path: Path,
    say: fmt.Printer,
    lang: str,
    ckpt: dict | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    *,
    report_test: bool = True,
) -> Fitted:
    """Train one model into the run directory `path`: the book's loop, report and files.

    A checkpoint (`checkpoint.pt`: model, optimizer, RNG states, metrics so far) is written after every
    epoch; with `ckpt` (one read back by `resume`) training continues after its epoch and ends exactly as
    an uninterrupted run would on the CPU. `on_epoch(row)` (a sweep's pruner) is called with each epoch's
    metrics row once its checkpoint is written; an exception it raises stops the run (status failed).
    """
    # -------------------------------------------------------------------------------- model and optimizer
    device, info = setup.device, setup.info
    train_set, val_set, test_set = setup.splits["train"], setup.splits["val"], setup.splits["test"]
    torch.manual_seed(derive_seed(cfg.seed, "global"))  # anything outside our own generators
    net, _ = build_model(cfg.model, info.input_shape, info.head_sizes)
    init_weights(net, cfg.model.init, derive_seed(cfg.seed, "init"))
    if cfg.train.relu_after_max:
        relu_after_max(net)
    net.to(device, memory_format=torch.channels_last) if setup.channels_last else net.to(device)
    gens = make_gens(cfg.seed, device)
    net.set_generator(gens["layers"])
    augment = make_augment(cfg.data.augment, info.input_shape)  # None without data.augment
    params = [p for p in net.parameters() if p.requires_grad]
    opt = make_optimizer(params, cfg.optimizer, device, fused=cfg.train.fused)
    reg = Regularizer(cfg.regularizer, weights_and_kernels(net))
    tc = cfg.train
    bs = min(tc.batch_size, train_set.n)
    steps = train_set.n // bs if tc.drop_last else math.ceil(train_set.n / bs)
    total_steps = tc.iterations or steps * tc.epochs
    epochs = math.ceil(total_steps / steps)
    member = Member(cfg, setup, path, say, epochs, ckpt)
    member.summary.setdefault("lang", lang)  # a resumed run goes on printing in its own language
    if ckpt is not None:
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        match_layouts(opt)
        set_rng_states(ckpt["rng"], gens)

    test_probs = None
    try:
        if tc.report > 0 and ckpt is None:
            say(fmt.train_started(cfg.name))
        with Progress(say.quiet, steps) as progress:
            for epoch in range(member.first_epoch, epochs + 1):
                # ---- train one epoch: losses, correct counts and gradient norms stay on the device
                net.train()
                progress.start(epoch)
                t_epoch = time.perf_counter()
                start = (epoch - 1) * steps
                n_steps = min(steps, total_steps - start)
                losses, correct, norms, n_norms = run_epoch(
                    cfg, net, opt, reg, params, train_set, gens, augment, start, n_steps, steps, total_steps, progress
                )
                # ---- once per epoch: read the sums (the only host sync of the epoch), evaluate, log
                cost = losses.sum().item() / n_steps
                t_steps = time.perf_counter()
                if not math.isfinite(cost):
                    raise DivergedError(member.diverged_message(epoch, start, losses))
                seen = n_steps * bs if tc.drop_last or n_steps < steps else train_set.n
                stats = {"cost": cost, "train_acc": (correct.double() / seen).tolist(), "t_epoch": t_epoch}
                stats["val_loss"], stats["val_acc"] = evaluate(net, val_set)
                if tc.eval_train:
                    stats["train_eval_loss"], stats["train_eval_acc"] = evaluate(net, train_set)
                t_eval = time.perf_counter()
                stats["grad_norm"], stats["grad_norm_first"] = (norms / n_norms).tolist()
                stats.update(lr=opt.param_groups[0]["lr"], steps_s=t_steps - t_epoch, eval_s=t_eval - t_steps)
                state = lambda: {k: v.detach().clone() for k, v in net.state_dict().items()}  # noqa: E731
                stop = member.end_epoch(epoch, start, losses, stats, state)
                # ---- checkpoint: everything needed to continue after this epoch
                if member.checkpoint_due(stop or epoch == epochs):
                    member.checkpoint(epoch, net.state_dict(), opt.state_dict(), rng_states(gens))
                if on_epoch is not None:
                    on_epoch(member.row)
                if stop:
                    break

        # -------------------------------------------------------------------------------- test and report
        member.end_training()
        last = {k: v.detach().clone() for k, v in net.state_dict().items()}
        tested = last
        if tc.test_on == "best" and member.best_state is not None:
            net.load_state_dict(member.best_state)
            tested = member.best_state
        t_test = time.perf_counter()
        results = {"test_loss": None, "test_acc": None, "test_probs": None, "test_y": test_set.y.cpu()}
        results["test_loss"], results["test_acc"] = evaluate(net, test_set)
        if test_set.n:
            results["test_probs"] = test_probs = probabilities(net, test_set.x)
        results["test_s"] = time.perf_counter() - t_test
        results.update(params=param_stats(net), weights=weights_and_kernels(net))
        member.finish(last, tested, results, info, lang, report_test)
        member.close()
    except KeyboardInterrupt:
        member.writer.save_model(net.state_dict())
        member.close("interrupted")
        raise
    except DivergedError as e:
        member.close("diverged", str(e))
        raise
    except BaseException as e:
        member.close("failed", f"{e.__class__.__name__}: {e}")
        raise
    return Fitted(net, member.summary, test_probs)


def run_epoch(cfg, net, opt, reg, params, data, gens, augment, start, n_steps, steps, total_steps, progress):
    """The hot loop over one epoch's batches; returns device tensors only (no host sync here).

    Returns per-step losses, correct counts per head, and the sum of (global, first-layer) gradient norms
    over the `n_norms` sampled steps. Per step only the loss and the predicted classes are kept (no
    kernel launches beyond them); they are compared with the labels once, at the end.
    """
    tc, oc = cfg.train, cfg.optimizer
    device, bs = data.y.device, min(tc.batch_size, data.n)
    scheduled = oc.schedule != "none" or oc.warmup > 0
    amp = tc.amp == "bf16"
    norm_every = -(-steps // GRAD_NORM_SAMPLES)
    first_weight = weights_and_kernels(net)[0]  # its gradient shows vanishing gradients in deep sigmoid nets
    perm = torch.randperm(data.n, generator=gens["order"], device=device)
    losses, preds = [], []
    norms = torch.zeros(2, device=device)
    for step in range(n_steps):
        if scheduled:
            for group in opt.param_groups:
                group["lr"] = lr_at(oc, (start + step) / steps, total_steps / steps)
        idx = perm[step * bs : (step + 1) * bs]
        x, y = data.rows(idx), data.y.index_select(0, idx)
        if augment is not None:  # data.augment: random per-sample transforms, on the device
            x = augment(x, gens["augment"])
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = net(x)
            loss = head_loss(net, logits, y)
        penalty = reg.penalty()
        if penalty is not None:
            loss = loss + penalty
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if step % norm_every == 0:
            grads = [p.grad for p in params if p.grad is not None]
            norms += torch.stack([torch.nn.utils.get_total_norm(grads, foreach=True), first_weight.grad.norm()])
        if tc.clip_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, tc.clip_grad_norm, foreach=True)
        reg.decay(opt.param_groups[0]["lr"])
        opt.step()
        losses.append(loss.detach())
        preds.append(head_predictions(net, logits))
        progress.advance(step)
    seen = torch.cat(preds)
    correct = (seen == data.y.index_select(0, perm[: len(seen)])).sum(0)
    return torch.stack(losses), correct, norms, len(range(0, n_steps, norm_every))


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


OnEpoch = Callable[[dict[str, Any]], None] | None


def member_norms(params: list[torch.Tensor], first_weight: torch.Tensor) -> torch.Tensor:
    """Per member: global gradient norm and first weight layer's gradient norm, (K, 2)."""
    sq = sum(p.grad.flatten(1).pow(2).sum(1) for p in params if p.grad is not None)
    return torch.stack([sq.sqrt(), first_weight.grad.flatten(1).norm(dim=1)], dim=1)


def clip_members(params: list[torch.Tensor], max_norm: float) -> None:
    """clip_grad_norm_ per member: each member's gradients scaled to at most `max_norm` together."""
    sq = sum(p.grad.flatten(1).pow(2).sum(1) for p in params if p.grad is not None)
    coef = (max_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)
    for p in params:
        if p.grad is not None:
            p.grad.mul_(coef.view(-1, *[1] * (p.dim() - 1)))


def fit_stacked(
    cfgs: list[Config],
    setup: Setup,
    paths: list[Path],
    console: fmt.Printer,
    lang: str,
    callbacks: list[OnEpoch] | None = None,
) -> list[Fitted]:
    """Train K stackable configs as one stacked model; every member writes its own run directory.

    `callbacks[m]` is called with member m's metrics row after each epoch; if it raises, member m stops
    (status `pruned` for a sweep's Pruned, `failed` otherwise) and the others go on.
    """
    k, cfg = len(cfgs), cfgs[0]
    device, info = setup.device, setup.info
    train_set, val_set, test_set = setup.splits["train"], setup.splits["val"], setup.splits["test"]
    torch.manual_seed(derive_seed(cfg.seed, "global"))
    net, _ = build_model(cfg.model, info.input_shape, info.head_sizes, members=[c.model for c in cfgs])
    init_weights(net, cfg.model.init, [derive_seed(c.seed, "init") for c in cfgs])
    if cfg.train.relu_after_max:
        relu_after_max(net)
    net.to(device)
    gens = [make_gens(c.seed, device) for c in cfgs]
    net.set_generators([g["layers"] for g in gens])
    augment = make_augment(cfg.data.augment, info.input_shape)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = StackedOptimizer(params, [c.optimizer for c in cfgs])
    weights = weights_and_kernels(net)
    reg = StackedRegularizer([c.regularizer for c in cfgs], weights)
    weight_pos = [next(i for i, p in enumerate(params) if p is w) for w in weights]
    templates = [opt_template(net, c, device) for c in cfgs]
    tc, oc = cfg.train, cfg.optimizer
    bs = min(tc.batch_size, train_set.n)
    steps = train_set.n // bs if tc.drop_last else math.ceil(train_set.n / bs)
    total_steps = tc.iterations or steps * tc.epochs
    epochs = math.ceil(total_steps / steps)
    members = [Member(c, setup, p, fmt.Printer(True), epochs) for c, p in zip(cfgs, paths, strict=True)]
    for member in members:
        member.summary.setdefault("lang", lang)
    for member in members:  # its train_s is the whole group's wall time
        member.summary["side_by_side"] = k
    weight = torch.ones(k, device=device)  # a frozen member's loss counts 0
    norm_every = max(1, steps // GRAD_NORM_SAMPLES)
    scheduled = oc.schedule != "none" or oc.warmup > 0
    unit = dataclasses.replace(oc, lr=1.0, min_lr=0.0)  # lr_at is affine in lr: lr·alpha + beta
    first_weight = weights[0]
    final: dict[int, tuple[dict, dict]] = {}  # member → (last weights, tested weights) once it stops
    if tc.report > 0:
        console(f"Model {cfg.name} train started ({k} models side by side):")
        for member in members:  # each run's own log.txt reads as if it had trained alone
            member.say(fmt.train_started(member.cfg.name))
    t0 = t_report = last_round = time.perf_counter()
    round_cost = 0.0
    try:
        with Progress(console.quiet, steps) as progress:
            for epoch in range(1, epochs + 1):
                net.train()
                progress.start(epoch)
                t_epoch = time.perf_counter()
                start = (epoch - 1) * steps
                n_steps = min(steps, total_steps - start)
                perms = torch.stack([torch.randperm(train_set.n, generator=g["order"], device=device) for g in gens])
                step_losses, preds = [], []  # per step: (K,) losses and (K, B, heads) predictions
                norms = torch.zeros(k, 2, device=device)
                for step in range(n_steps):
                    if scheduled:
                        t = (start + step) / steps
                        alpha = lr_at(unit, t, total_steps / steps)
                        opt.schedule(alpha, lr_at(oc, t, total_steps / steps) - oc.lr * alpha)
                    idx = perms[:, step * bs : (step + 1) * bs].reshape(-1)
                    x, y = train_set.rows(idx), train_set.y.index_select(0, idx).view(k, -1, train_set.y.shape[1])
                    if augment is not None:
                        x = torch.cat(
                            [
                                augment(part, g["augment"])
                                for part, g in zip(x.view(k, -1, *x.shape[1:]), gens, strict=True)
                            ]
                        )
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=tc.amp == "bf16"):
                        logits = net(stack_input(x, k))
                        loss = member_losses(net, logits, y)
                    penalty = reg.penalty()
                    if penalty is not None:
                        loss = loss + penalty
                    opt.zero_grad()
                    (loss * weight).sum().backward()
                    if step % norm_every == 0:
                        norms += member_norms(params, first_weight)
                    if tc.clip_grad_norm:
                        clip_members(params, tc.clip_grad_norm)
                    reg.decay([opt.lr[i] for i in weight_pos])
                    opt.step()
                    step_losses.append(loss.detach())
                    preds.append(member_predictions(net, logits))
                    progress.advance(step)
                losses = torch.stack(step_losses, dim=1)  # (K, steps)
                seen_y = train_set.y.index_select(0, perms[:, : n_steps * bs].reshape(-1)).view(k, n_steps * bs, -1)
                correct = (torch.cat(preds, dim=1)[:, : seen_y.shape[1]] == seen_y).sum(1)  # (K, heads)
                # ---- once per epoch: one sync for all members, then each member's bookkeeping
                costs = (losses.sum(1) / n_steps).tolist()
                t_steps = time.perf_counter()
                seen = n_steps * bs if tc.drop_last or n_steps < steps else train_set.n
                train_acc = (correct.double() / seen).tolist()
                val_loss, val_acc = evaluate_members(net, val_set, k)
                if tc.eval_train:
                    tr_loss, tr_acc = evaluate_members(net, train_set, k)
                t_eval = time.perf_counter()
                norm_rows = (norms / len(range(0, n_steps, norm_every))).tolist()
                # checkpoints of all members together, at most every checkpoint_every seconds and never
                # costing more than 2% of the time (K members' checkpoints are K times one's)
                every = tc.checkpoint_every
                since = time.perf_counter() - last_round
                round_due = epoch == epochs or every <= 0 or since >= max(every, 50 * round_cost)
                ckpt_cost = 0.0
                for m, member in enumerate(members):
                    if not member.active:
                        continue
                    if not math.isfinite(costs[m]):  # freeze it; its last good checkpoint stays
                        member.active = False
                        member.close("diverged", member.diverged_message(epoch, start, losses[m]))
                        console(
                            f"{member.cfg.name} (seed {member.cfg.seed}) diverged in epoch {epoch}; the other members go on"
                        )
                        freeze(m, opt, weight)
                        continue
                    stats = {
                        "cost": costs[m],
                        "train_acc": train_acc[m],
                        "val_loss": val_loss[m],
                        "val_acc": val_acc[m],
                    }
                    if tc.eval_train:
                        stats.update(train_eval_loss=tr_loss[m], train_eval_acc=tr_acc[m])
                    stats.update(grad_norm=norm_rows[m][0], grad_norm_first=norm_rows[m][1], t_epoch=t_epoch)
                    mo = member.cfg.optimizer
                    lr = lr_at(mo, (start + n_steps - 1) / steps, total_steps / steps) if scheduled else mo.lr
                    stats.update(lr=lr, steps_s=t_steps - t_epoch, eval_s=t_eval - t_steps)
                    stop = member.end_epoch(epoch, start, losses[m], stats, lambda m=m: member_state(net, m))
                    if stop or round_due:
                        t_ckpt = time.perf_counter()
                        sd = opt.member_state_dict(m, templates[m])
                        member.checkpoint(epoch, member_state(net, m), sd, rng_states(gens[m]))
                        ckpt_cost += time.perf_counter() - t_ckpt
                    if callbacks and callbacks[m] is not None:
                        try:
                            callbacks[m](member.row)
                        except Exception as e:  # stopped by its callback (a pruner): this member alone
                            member.active = False
                            member.close(stopped_status(e), str(e))
                            freeze(m, opt, weight)
                            continue
                    if stop:  # early stop: keep its weights from here on, frozen
                        member.active = False
                        final[m] = stopped_weights(net, m, member)
                        freeze(m, opt, weight)
                if round_due:
                    last_round, round_cost = time.perf_counter(), ckpt_cost
                if tc.report > 0 and epoch % tc.report == 0:
                    now = time.perf_counter()
                    console(group_line(epoch, costs, train_acc, val_acc, members, int(now - t_report), int(now - t0)))
                    t_report = now
                if not any(mb.active for mb in members):
                    break

        # ---- test every member that did not diverge, with its tested weights in place
        for member in members:
            if member.summary["status"] == "running":
                member.end_training()
        for m, member in enumerate(members):
            if member.summary["status"] != "running":  # diverged or stopped by its callback
                continue
            last, tested = final.get(m) or stopped_weights(net, m, member)
            final[m] = (last, tested)
            load_member_state(net, m, tested)
        t_test = time.perf_counter()
        test_loss, test_acc = evaluate_members(net, test_set, k)
        probs = member_probabilities(net, test_set.x, k) if test_set.n else [None] * k
        test_s = int(time.perf_counter() - t_test)
        fitted = []
        for m, member in enumerate(members):
            if member.summary["status"] != "running":
                fitted.append(Fitted(net, member.summary, None))
                continue
            results = {"test_loss": test_loss[m], "test_acc": test_acc[m], "test_probs": probs[m], "test_s": test_s}
            results.update(test_y=test_set.y.cpu(), params=param_stats(net, m), weights=[w[m] for w in weights])
            last, tested = final[m]
            member.finish(last, tested, results, info, lang)
            member.close()
            console(
                f"[seed {member.cfg.seed}] "
                + fmt.test_report(member.cfg.name, test_acc[m] or [float("nan")], test_s).rstrip()
            )
            fitted.append(Fitted(net, member.summary, probs[m]))
        return fitted
    except KeyboardInterrupt:
        for m, member in enumerate(members):
            if member.summary["status"] == "running":
                member.writer.save_model(member_state(net, m))
                member.close("interrupted")
        raise
    except BaseException as e:
        for member in members:
            if member.summary["status"] == "running":
                member.close("failed", f"{e.__class__.__name__}: {e}")
        raise


def stopped_status(e: Exception) -> str:
    return "pruned" if isinstance(e, Pruned) else "failed"


def stopped_weights(net: Net, m: int, member: Member) -> tuple[dict, dict]:
    """(last weights, tested weights) of member m now: tested = best epoch's with test_on: best."""
    last = member_state(net, m)
    tested = member.best_state if member.cfg.train.test_on == "best" and member.best_state is not None else last
    return last, tested


def freeze(m: int, opt: StackedOptimizer, weight: torch.Tensor) -> None:
    """Member m stops training: its loss no longer counts and its parameters no longer move."""
    weight[m] = 0.0
    opt.freeze(m)


def opt_template(net: Net, cfg: Config, device: torch.device) -> dict[str, Any]:
    """A torch optimizer's state_dict for one member's parameters: the param_groups of member checkpoints."""
    dummies = [torch.zeros(p.shape[1:], device=device, requires_grad=True) for p in net.parameters() if p.requires_grad]
    return make_optimizer(dummies, cfg.optimizer, device).state_dict()


def group_line(
    epoch: int, costs: list[float], train_acc: list, val_acc: list, members: list[Member], secs: int, total: int
) -> str:
    """The book's epoch line with the mean over the members still training."""
    live = [i for i, mb in enumerate(members) if mb.active or mb.summary.get("stopped_early") == epoch]
    if not live:
        return f"    Epoch {epoch}: no member is training"

    def mean(values: list) -> list[float] | None:
        rows = [values[i] for i in live if values[i] is not None]
        return [sum(col) / len(col) for col in zip(*rows, strict=True)] if rows else None

    cost = sum(costs[i] for i in live) / len(live)
    return (
        fmt.epoch_line(epoch, cost, mean(train_acc) or [float("nan")], mean(val_acc), secs, total)
        + f" (mean of {len(live)})"
    )
