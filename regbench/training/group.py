"""Groups of runs trained side by side: seed groups, sweep trials and ensemble members in one stacked pass.

Runs whose configs differ only in per-member values (`seed`, `optimizer.lr`, `optimizer.weight_decay`,
`regularizer.l2_decay` / `l1_decay`, dropout `keep_prob`, noise `std`, `name`) and in what is only printed
(`train.report`, `train.show`, `train.show_params`) share an architecture, data and schedule, so K of them
train as one stacked model (regbench.stacked.layers): one grouped convolution or batched matrix product per layer
instead of K small ones. Each member keeps its own initial values, batch order, dropout/noise draws,
optimizer state and hyperparameters, and writes its own ordinary run directory; a member whose loss becomes
NaN/inf is frozen and marked diverged while the others go on.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..config import Config
from ..core import console as fmt
from ..core.errors import DivergedError
from ..core.resources import memory_bytes
from ..data.augment import make_augment
from ..nn.model import Net, build_model, init_weights, param_stats, relu_after_max, weights_and_kernels
from ..optim import lr_at, make_optimizer
from ..rundir import Run, create_run_dir, load_run
from ..stacked.layers import from_members, load_member_state, member_state
from ..stacked.optim import StackedOptimizer, StackedRegularizer
from .trainer import (
    EVAL_BATCH,
    GRAD_NORM_SAMPLES,
    Batches,
    Fitted,
    Member,
    Progress,
    Setup,
    derive_seed,
    make_gens,
    prepare,
    rng_states,
)

OnEpoch = Callable[[dict[str, Any]], None] | None
MEMBER_VALUES = (
    "seed",
    "name",
    "optimizer.lr",
    "optimizer.weight_decay",
    "regularizer.l2_decay",
    "regularizer.l1_decay",
)
# what is printed, not what is trained: members may differ in these too (each prints and saves its own)
DISPLAY_ONLY = ("train.report", "train.show", "train.show_params")


def stack_key(cfg: Config) -> str:
    """Configs with equal keys can train side by side: everything but the per-member values (and what is
    only printed) is equal."""
    doc = cfg.to_dict()
    for dotted in MEMBER_VALUES + DISPLAY_ONLY:
        *parents, leaf = dotted.split(".")
        node = doc
        for part in parents:
            node = node[part]
        node[leaf] = None
    doc["model"]["layers"] = [_neutral(e) for e in doc["model"]["layers"]]
    return repr(doc)


def _neutral(entry: Any) -> Any:
    """A layer entry with its per-member values (dropout keep_prob, noise std) blanked, blocks included."""
    if not isinstance(entry, list) or len(entry) < 2:
        return entry
    kind, params = entry[0], dict(entry[1])
    if kind == "dropout":
        params["keep_prob"] = None
    if kind == "noise":
        params["std"] = None
    for key in ("layers",):
        if key in params:
            params[key] = [_neutral(e) for e in params[key]]
    if "branches" in params:
        params["branches"] = [[_neutral(e) for e in b] for b in params["branches"]]
    return [kind, params]


def can_stack(cfgs: list[Config]) -> bool:
    """True when the configs differ only in per-member values (and there are at least two)."""
    return len(cfgs) > 1 and len({stack_key(c) for c in cfgs}) == 1 and all(c.train.ensemble == 1 for c in cfgs)


def max_members(cfg: Config, setup: Setup, share: float = 0.25) -> int:
    """How many members fit in `share` of the machine's (or GPU's) memory: parameters with gradients and
    optimizer state, plus forward activations and their gradients for one batch."""
    net, rows = build_model_meta(cfg, setup)
    params = sum(r.weights + r.other for r in rows)
    acts = sum(math.prod(r.shape) for r in rows) * max(cfg.train.batch_size, EVAL_BATCH)
    per_member = 4 * (4 * params + 3 * acts)
    budget = memory_bytes(setup.device) * share
    return max(1, int(budget // max(per_member, 1)))


def build_model_meta(cfg: Config, setup: Setup):
    with torch.device("meta"):
        return build_model(cfg.model, setup.info.input_shape, setup.info.head_sizes)


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def train_group(
    cfgs: list[Config], out: str | Path = "runs", *, lang: str = "ko", quiet: bool = False, stack: int | None = None
) -> list[Run]:
    """Train several runs, side by side where they can stack (up to `stack` members at a time, bounded by
    memory), one after another otherwise. Every run gets its own run directory; returns them in order.

    A diverged member is recorded (status diverged) and the others go on; DivergedError is raised at the
    end if any member diverged, after all members are written.
    """
    setup = prepare(cfgs[0])
    paths = [create_run_dir(out, c.name) for c in cfgs]
    console = fmt.Printer(quiet)
    fit_members(cfgs, setup, paths, console, lang, stack)
    runs = [load_run(p) for p in paths]
    diverged = [r for r in runs if r.status == "diverged"]
    if diverged:
        raise DivergedError(
            f"{len(diverged)} of {len(runs)} runs diverged ({', '.join(r.path.name for r in diverged)}); "
            "the others completed"
        )
    return runs


def fit_members(
    cfgs: list[Config],
    setup: Setup,
    paths: list[Path],
    console: fmt.Printer,
    lang: str,
    stack: int | None = None,
    callbacks: list[OnEpoch] | None = None,
) -> list[Fitted]:
    """Fit every config into its run directory: stacked in chunks when they can stack, else one by one.

    `callbacks[i]` (or None) is called with run i's metrics row after each epoch (a sweep's pruner); an
    exception from it stops that run alone.
    """
    from .trainer import fit

    callbacks = callbacks or [None] * len(cfgs)
    if stack == 1 or not can_stack(cfgs):
        items = zip(cfgs, paths, callbacks, strict=True)
        return [fit(c, setup, p, fmt.Printer(console.quiet), lang, on_epoch=cb) for c, p, cb in items]
    size = min(stack or len(cfgs), max_members(cfgs[0], setup))
    fitted: list[Fitted] = []
    for part in chunks(list(zip(cfgs, paths, callbacks, strict=True)), size):
        group_cfgs, group_paths, group_cbs = [c for c, _, _ in part], [p for _, p, _ in part], [cb for *_, cb in part]
        if len(part) == 1:
            fitted.append(
                fit(group_cfgs[0], setup, group_paths[0], fmt.Printer(console.quiet), lang, on_epoch=group_cbs[0])
            )
        else:
            fitted += fit_stacked(group_cfgs, setup, group_paths, console, lang, group_cbs)
    return fitted


# ------------------------------------------------------------------------------------------------ stacked fit
def stack_input(x: torch.Tensor, k: int) -> torch.Tensor:
    """(K·B, …) per-member batches → the stacked layout: (B, K·C, H, W) for images, (K, B, F) for vectors."""
    parts = x.view(k, -1, *x.shape[1:])
    return from_members(parts)


def repeat_input(x: torch.Tensor, k: int) -> torch.Tensor:
    """The same batch for every member (evaluation)."""
    if x.dim() == 4:
        return x.repeat(1, k, 1, 1)
    return x.unsqueeze(0).expand(k, *x.shape)


def member_losses(net: Net, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-member mean cross-entropy summed over heads: logits (K, B, O), y (K, B, heads) → (K,)."""
    k, b, _ = logits.shape
    total = 0
    for h, part in enumerate(net.split_heads(logits)):
        ce = F.cross_entropy(part.reshape(k * b, -1), y[..., h].reshape(k * b), reduction="none")
        total = total + ce.view(k, b).mean(1)
    return total


def member_predictions(net: Net, logits: torch.Tensor) -> torch.Tensor:
    """Predicted class per member, sample and head: (K, B, heads)."""
    return torch.stack([p.argmax(-1) for p in net.split_heads(logits)], dim=-1)


def member_correct(net: Net, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Correct predictions per member and head: (K, heads)."""
    return torch.stack([(p.argmax(-1) == y[..., h]).sum(1) for h, p in enumerate(net.split_heads(logits))], dim=1)


@torch.inference_mode()
def evaluate_members(net: Net, data: Batches, k: int) -> tuple[list[float | None], list[list[float] | None]]:
    """Per member: mean loss and per-head accuracy over a whole split in evaluation mode."""
    if data.n == 0:
        return [None] * k, [None] * k
    was_training = net.training
    net.eval()
    loss = torch.zeros(k, device=data.y.device, dtype=torch.float64)
    correct = torch.zeros(k, len(net.heads), device=data.y.device, dtype=torch.long)
    for i in range(0, data.n, EVAL_BATCH):
        logits = net(repeat_input(data.chunk(i, i + EVAL_BATCH), k))
        y = data.y[i : i + EVAL_BATCH].unsqueeze(0).expand(k, -1, -1)
        loss += member_losses(net, logits, y) * len(y[0])
        correct += member_correct(net, logits, y)
    net.train(was_training)
    losses = (loss / data.n).tolist()
    accs = (correct.double() / data.n).tolist()
    return losses, accs


@torch.inference_mode()
def member_probabilities(net: Net, x: torch.Tensor, k: int) -> list[list[torch.Tensor]]:
    """Softmax probabilities per member and head, on the CPU."""
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    parts = [
        [p.softmax(-1).cpu() for p in net.split_heads(net(repeat_input(x[i : i + EVAL_BATCH].to(device), k)))]
        for i in range(0, len(x), EVAL_BATCH)
    ]
    net.train(was_training)
    heads = [torch.cat([p[h] for p in parts], dim=1) for h in range(len(net.heads))]  # (K, N, classes)
    return [[h[m] for h in heads] for m in range(k)]


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
    from ..runner import Pruned

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
