"""The trainer: config → data → model → epochs → test → run directory, printing the book's report.

`train(cfg)` sets up and calls `fit`, one plain function whose epoch loop reads top to bottom. The data
live as tensors on the training device and batches are taken by index from an on-device permutation;
per-step losses and accuracy counts stay on the device and are read once per epoch, so the hot loop has
no host round-trips.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import __version__
from . import console as fmt
from .config import Config
from .data import DataInfo, Dataset, data_info, load_data
from .data.augment import make_augment
from .errors import ConfigError, DivergedError, RunDirError
from .model import Net, Row, build_model, init_weights, param_stats, weights_and_kernels
from .optim import lr_at, make_optimizer
from .regularize import Regularizer
from .resources import check_fits
from .rundir import Run, RunWriter, create_run_dir, load_checkpoint, load_run

EVAL_BATCH = 512  # evaluation batch: large for speed, small enough for 96×96 images on a laptop
GRAD_NORM_SAMPLES = 16  # gradient norms are measured on this many steps per epoch (kept cheap)


def derive_seed(seed: int, purpose: str) -> int:
    """Independent streams for init, batch order, dropout/noise and sample display from one config seed."""
    return int(np.random.SeedSequence([seed, *purpose.encode()]).generate_state(1, np.uint64)[0] >> 1)


def resolve_device(spec: str) -> torch.device:
    """`auto` → cuda when available, else cpu; an unavailable cuda is a config error, not a crash."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(spec)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            msg = f"'{spec}' requested but torch sees no CUDA device (torch {torch.__version__}); use cpu or auto"
            raise ConfigError(msg, path="train.device")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            msg = f"'{spec}' requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            raise ConfigError(msg, path="train.device")
    return dev


def check_config(cfg: Config) -> tuple[DataInfo, list[Row]]:
    """Everything that can be checked before any work: the data set's shape and the model built on it."""
    info = data_info(cfg.data)
    with torch.device("meta"):
        _, rows = build_model(cfg.model, info.input_shape, info.head_sizes)
    check_model_memory(rows, cfg, None)
    return info, rows


def check_model_memory(rows: list[Row], cfg: Config, device: torch.device | None) -> None:
    """Weights, gradients and two optimizer states in float32 must fit the machine (or the GPU)."""
    params = sum(r.weights + r.other for r in rows) * cfg.train.ensemble
    what = f"the model ({params:,} parameters with gradients and optimizer state)"
    check_fits(params * 4 * 4, what, "model.layers", device)


@dataclass
class Batches:
    """One split resident on the training device."""

    x: torch.Tensor
    y: torch.Tensor  # (N, heads) int64

    @property
    def n(self) -> int:
        return int(self.x.shape[0])


def to_device(ds: Dataset, split: str, device: torch.device, channels_last: bool) -> Batches:
    x = ds.x[split].to(device)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return Batches(x, ds.y[split].to(device))


def head_loss(net: Net, logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Softmax cross-entropy; with several heads, the sum over heads (book's Office-31)."""
    if len(net.heads) == 1:
        return F.cross_entropy(logits, y[:, 0], reduction=reduction)
    return sum(F.cross_entropy(p, y[:, h], reduction=reduction) for h, p in enumerate(net.split_heads(logits)))


def head_correct(net: Net, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Correct predictions per head, as a (heads,) tensor (stays on the device)."""
    if len(net.heads) == 1:
        return (logits.argmax(1) == y[:, 0]).sum().unsqueeze(0)
    return torch.stack([(p.argmax(1) == y[:, h]).sum() for h, p in enumerate(net.split_heads(logits))])


@torch.no_grad()
def evaluate(net: Net, data: Batches) -> tuple[float | None, list[float] | None]:
    """Mean loss and per-head accuracy over a whole split in evaluation mode (None for an empty split)."""
    if data.n == 0:
        return None, None
    was_training = net.training
    net.eval()
    loss = torch.zeros((), device=data.x.device, dtype=torch.float64)
    correct = torch.zeros(len(net.heads), device=data.x.device, dtype=torch.long)
    for i in range(0, data.n, EVAL_BATCH):
        logits = net(data.x[i : i + EVAL_BATCH])
        y = data.y[i : i + EVAL_BATCH]
        loss += head_loss(net, logits, y, reduction="sum")
        correct += head_correct(net, logits, y)
    net.train(was_training)
    return loss.item() / data.n, (correct.double() / data.n).tolist()  # one sync per evaluation


@torch.no_grad()
def probabilities(net: Net, x: torch.Tensor) -> list[torch.Tensor]:
    """Softmax probabilities per head (book's get_estimate), in evaluation batches, on the CPU."""
    was_training = net.training
    net.eval()
    parts = [
        [p.softmax(-1).cpu() for p in net.split_heads(net(x[i : i + EVAL_BATCH]))] for i in range(0, len(x), EVAL_BATCH)
    ]
    net.train(was_training)
    return [torch.cat([p[h] for p in parts]) for h in range(len(net.heads))]


def one_or_list(accs: list[float] | None) -> float | list[float] | None:
    """Single-head accuracies are stored as a number, multi-head ones as a list (one per head)."""
    if accs is None:
        return None
    return accs[0] if len(accs) == 1 else accs


def first(acc: float | list[float] | None) -> float | None:
    return acc[0] if isinstance(acc, list) else acc


def versions() -> dict[str, str]:
    return {"python": platform.python_version(), "torch": str(torch.__version__), "regbench": __version__}


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclass
class Setup:
    """What every member of a run shares: device, data on it, and the data set's description."""

    device: torch.device
    info: DataInfo
    data: Dataset
    channels_last: bool
    splits: dict[str, Batches] = field(default_factory=dict)


def prepare(cfg: Config) -> Setup:
    """Resolve the device, load the data and put every split on the device (no files written yet)."""
    device = resolve_device(cfg.train.device)
    info, rows = check_config(cfg)
    params = sum(r.weights + r.other for r in rows) * cfg.train.ensemble
    check_fits(
        params * 4 * 4, f"the model ({params:,} parameters with gradients and optimizer state)", "model.layers", device
    )
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    data = load_data(cfg.data)
    needs_val = cfg.train.early_stop is not None or cfg.train.test_on == "best"
    if needs_val and data.size("val") == 0:
        key = "train.early_stop" if cfg.train.early_stop is not None else "train.test_on"
        raise ConfigError("needs a validation split; set data.split.val > 0", path=key)
    channels_last = len(info.input_shape) == 3 and device.type in ("cpu", "cuda")
    setup = Setup(device, info, data, channels_last)
    setup.splits = {s: to_device(data, s, device, channels_last) for s in ("train", "val", "test")}
    return setup


def train(cfg: Config, out: str | Path = "runs", *, lang: str = "ko", quiet: bool = False) -> Run:
    """Train the configured model, print the book's report, and write a run directory under `out`.

    Returns the finished run as read back from disk. Raises RegbenchError subclasses for bad input
    (before anything is written), DivergedError for a NaN/inf loss (the run is kept, status diverged),
    and lets KeyboardInterrupt through after marking the run interrupted.
    """
    setup = prepare(cfg)
    path = create_run_dir(out, cfg.name)
    say = fmt.Printer(quiet)
    if cfg.train.ensemble > 1:
        train_ensemble(cfg, setup, path, say, lang)
    else:
        fit(cfg, setup, path, say, lang)
    return load_run(path)


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
    net.to(device, memory_format=torch.channels_last) if setup.channels_last else net.to(device)
    gens = {
        "order": torch.Generator(device=device).manual_seed(derive_seed(cfg.seed, "order")),  # batch order
        "layers": torch.Generator(device=device).manual_seed(derive_seed(cfg.seed, "layers")),  # dropout, noise
        "augment": torch.Generator(device=device).manual_seed(derive_seed(cfg.seed, "augment")),  # data.augment
    }
    net.set_generator(gens["layers"])
    augment = make_augment(cfg.data.augment, info.input_shape)  # None without data.augment
    params = [p for p in net.parameters() if p.requires_grad]
    opt = make_optimizer(params, cfg.optimizer, device)
    reg = Regularizer(cfg.regularizer, weights_and_kernels(net))
    tc = cfg.train
    bs = min(tc.batch_size, train_set.n)
    steps = train_set.n // bs if tc.drop_last else math.ceil(train_set.n / bs)
    total_steps = tc.iterations or steps * tc.epochs
    epochs = math.ceil(total_steps / steps)
    stopper = EarlyStopper(tc.early_stop) if tc.early_stop else None
    keep_best = stopper is not None or tc.test_on == "best"
    best_state = None

    # -------------------------------------------------------------------------------- run directory
    writer = RunWriter(path)
    if ckpt is None:
        writer.write_config(cfg.to_dict())
        writer.restore([], 0)  # a run restarted from scratch keeps nothing from a killed first epoch
        summary: dict[str, Any] = {
            "name": cfg.name,
            "status": "running",
            "seed": cfg.seed,
            "device": str(device),
            "started_at": now_iso(),
            "epochs": epochs,
            "epochs_done": 0,
            "steps_done": 0,
            "data": {"name": cfg.data.name, "train": train_set.n, "val": val_set.n, "test": test_set.n},
            "input_shape": list(info.input_shape),
            "heads": [{"name": h.name, "classes": h.classes} for h in info.heads],
            "versions": versions(),
        }
        first_epoch, t_offset = 1, 0.0
    else:  # continue after the checkpoint's epoch, with every state as it was then
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        set_rng_states(ckpt["rng"], gens)
        summary = {**ckpt["summary"], "status": "running"}
        summary.setdefault("resumed", []).append({"after_epoch": ckpt["epoch"], "at": now_iso()})
        writer.restore(ckpt["metrics"], ckpt["summary"]["steps_done"])
        say.lines[:0] = ckpt["log"]
        if stopper:
            stopper.bad = ckpt["stopper_bad"]
        if keep_best and (path / "best.pt").is_file():
            best_state = torch.load(path / "best.pt", map_location=device, weights_only=True)
        first_epoch, t_offset = ckpt["epoch"] + 1, ckpt["summary"].get("train_s", 0.0)
    writer.write_summary(summary)

    t0 = t_report = time.perf_counter() - t_offset
    test_probs, row = None, {}
    try:
        if tc.report > 0 and ckpt is None:
            say(fmt.train_started(cfg.name))
        with Progress(say.quiet, steps) as progress:
            for epoch in range(first_epoch, epochs + 1):
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
                if not math.isfinite(cost):
                    bad = int((~torch.isfinite(losses)).nonzero()[0, 0])
                    raise DivergedError(
                        f"{cfg.name}: loss became {losses[bad].item()} in epoch {epoch}, step {bad + 1}"
                        f" (step {start + bad} of the run); the run is marked diverged, its last good checkpoint kept"
                    )
                seen = n_steps * bs if tc.drop_last or n_steps < steps else train_set.n
                train_acc = (correct.double() / seen).tolist()
                val_loss, val_acc = evaluate(net, val_set)
                row = {"epoch": epoch, "train_loss": cost, "train_acc": one_or_list(train_acc)}
                row.update(val_loss=val_loss, val_acc=one_or_list(val_acc))
                if tc.eval_train:
                    row["train_eval_loss"], acc = evaluate(net, train_set)
                    row["train_eval_acc"] = one_or_list(acc)
                grad_norm, grad_norm_first = (norms / n_norms).tolist()
                row.update(lr=opt.param_groups[0]["lr"], grad_norm=grad_norm, grad_norm_first=grad_norm_first)
                now = time.perf_counter()
                row.update(epoch_s=now - t_epoch, total_s=now - t0)
                writer.add_metrics(row)
                if tc.log_every:
                    logged = [s for s in range(n_steps) if (start + s) % tc.log_every == 0]
                    values = losses[logged].tolist() if logged else []
                    writer.add_steps(
                        [{"step": start + s, "epoch": epoch, "loss": v} for s, v in zip(logged, values, strict=True)]
                    )
                summary.update(epochs_done=epoch, steps_done=start + n_steps, train_loss=cost, train_s=now - t0)
                summary.update(train_acc=row["train_acc"], val_acc=row["val_acc"])
                if tc.report > 0 and epoch % tc.report == 0:
                    line = fmt.epoch_line(epoch, cost, train_acc, val_acc, int(now - t_report), int(now - t0))
                    if tc.eval_train:
                        line += f" [train eval {fmt.acc_text(acc)}]"
                    say(line)
                    t_report = now
                # ---- best epoch and early stopping (watched on the first head)
                improved = val_acc is not None and track_best(summary, epoch, val_loss, val_acc[0], tc.early_stop)
                if improved and keep_best:
                    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                    writer.save_model(best_state, "best.pt")
                stop = stopper is not None and stopper.stop(improved)
                if stop:
                    summary["stopped_early"] = epoch
                    say(
                        f"Early stop after epoch {epoch}: no {tc.early_stop.metric} improvement in {tc.early_stop.patience} epochs"
                    )
                # ---- checkpoint: everything needed to continue after this epoch
                writer.save_checkpoint(
                    {
                        "epoch": epoch,
                        "model": net.state_dict(),
                        "optimizer": opt.state_dict(),
                        "rng": rng_states(gens),
                        "summary": summary,
                        "metrics": writer.rows,
                        "log": say.lines,
                        "stopper_bad": stopper.bad if stopper else 0,
                    }
                )
                writer.write_summary(summary)
                if on_epoch is not None:
                    on_epoch(row)
                if stop:
                    break
        train_s = time.perf_counter() - t0
        say(fmt.train_ended(cfg.name, int(train_s)))

        # -------------------------------------------------------------------------------- test and report
        writer.save_model(net.state_dict())
        if tc.test_on == "best" and best_state is not None:
            net.load_state_dict(best_state)
            summary["tested"] = f"best (epoch {summary['best_epoch']})"
        t_test = time.perf_counter()
        test_loss, test_acc = evaluate(net, test_set)
        say(fmt.test_report(cfg.name, test_acc or [float("nan")], int(time.perf_counter() - t_test)))
        if test_set.n:
            test_probs = probabilities(net, test_set.x)
        if tc.show > 0 and test_set.n > 0:
            show_samples(net, test_set, info, cfg, lang, say)
        stats = param_stats(net)
        if tc.show_params:
            say(fmt.near_zero_line(stats["near_zero"], stats["weights"]))
            say(fmt.param_dist_line(stats["mean"], stats["std"], lang))
            save_param_hist(net, path / "params_hist.png")
        final_train = first(row.get("train_eval_acc", summary.get("train_acc")))
        final_val = first(summary.get("val_acc"))
        gap = None if final_train is None or final_val is None else final_train - final_val
        summary.update(status="completed", test_acc=one_or_list(test_acc), test_loss=test_loss, train_s=train_s)
        summary.update(gap=gap, params=stats)
    except KeyboardInterrupt:
        summary.update(status="interrupted")
        writer.save_model(net.state_dict())
        raise
    except DivergedError as e:
        summary.update(status="diverged", error=str(e))
        raise
    except Exception as e:
        summary.update(status="failed", error=f"{e.__class__.__name__}: {e}")
        raise
    finally:
        summary["ended_at"] = now_iso()
        writer.write_summary(summary)
        writer.write_log(say.lines)
    return Fitted(net, summary, test_probs)


def run_epoch(cfg, net, opt, reg, params, data, gens, augment, start, n_steps, steps, total_steps, progress):
    """The hot loop over one epoch's batches; returns device tensors only (no host sync here).

    Returns per-step losses, correct counts per head, and the sum of (global, first-layer) gradient norms
    over the `n_norms` sampled steps.
    """
    tc, oc = cfg.train, cfg.optimizer
    device, bs = data.x.device, min(tc.batch_size, data.n)
    scheduled = oc.schedule != "none" or oc.warmup > 0
    norm_every = max(1, steps // GRAD_NORM_SAMPLES)
    first_weight = weights_and_kernels(net)[0]  # its gradient shows vanishing gradients in deep sigmoid nets
    perm = torch.randperm(data.n, generator=gens["order"], device=device)
    losses = torch.zeros(n_steps, device=device)
    correct = torch.zeros(len(net.heads), device=device, dtype=torch.long)
    norms = torch.zeros(2, device=device)
    for step in range(n_steps):
        if scheduled:
            for group in opt.param_groups:
                group["lr"] = lr_at(oc, (start + step) / steps, total_steps / steps)
        idx = perm[step * bs : (step + 1) * bs]
        x, y = data.x[idx], data.y[idx]
        if augment is not None:  # data.augment: random per-sample transforms, on the device
            x = augment(x, gens["augment"])
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
        losses[step] = loss.detach()
        correct += head_correct(net, logits, y)
        progress.advance(step)
    return losses, correct, norms, len(range(0, n_steps, norm_every))


def rng_states(gens: dict[str, torch.Generator]) -> dict[str, Any]:
    """Every random state a run depends on, as plain data and tensors (loadable with weights_only=True)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    states = {f"gen_{k}": g.get_state() for k, g in gens.items()}
    states.update(torch=torch.get_rng_state(), python=random.getstate())
    states["numpy"] = [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss]
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any], gens: dict[str, torch.Generator]) -> None:
    for k, g in gens.items():
        g.set_state(states[f"gen_{k}"])
    torch.set_rng_state(states["torch"])
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in states["python"]))
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def track_best(summary: dict[str, Any], epoch: int, val_loss: float | None, val_acc: float, stop: Any) -> bool:
    """Update best_val_acc/best_epoch; True when this epoch is the best so far by the watched metric."""
    by_loss = stop is not None and stop.metric == "val_loss"
    delta = stop.min_delta if stop is not None else 0.0
    if by_loss:
        better = summary.get("best_val_loss") is None or val_loss < summary["best_val_loss"] - delta
    else:
        better = summary.get("best_val_acc") is None or val_acc > summary["best_val_acc"] + delta
    if better:
        summary.update(best_epoch=epoch, best_val_acc=val_acc, best_val_loss=val_loss)
    return better


class EarlyStopper:
    """Counts epochs without improvement; `stop` is True once `patience` of them have passed."""

    def __init__(self, cfg):
        self.patience, self.bad = cfg.patience, 0

    def stop(self, improved: bool) -> bool:
        self.bad = 0 if improved else self.bad + 1
        return self.bad >= self.patience


def train_ensemble(cfg: Config, setup: Setup, path: Path, say: fmt.Printer, lang: str) -> None:
    """`train.ensemble: N`: N members with seeds seed, seed+1, … (each a normal run directory under
    `members/`), then the test accuracy of the averaged softmax of the first k members, k = 1…N."""
    n = cfg.train.ensemble
    writer = RunWriter(path)
    writer.write_config(cfg.to_dict())
    summary: dict[str, Any] = {"name": cfg.name, "status": "running", "seed": cfg.seed, "device": str(setup.device)}
    summary.update(started_at=now_iso(), ensemble={"members": []}, versions=versions())
    writer.write_summary(summary)
    (path / "members").mkdir(exist_ok=True)
    t0 = time.perf_counter()
    members, probs = summary["ensemble"]["members"], []
    try:
        for i in range(n):
            member = dataclasses.replace(cfg, seed=cfg.seed + i, train=dataclasses.replace(cfg.train, ensemble=1))
            member_dir = path / "members" / f"m{i + 1}-seed{member.seed}"
            if member_dir.is_dir() and load_run(member_dir).status == "completed":  # resuming: already done
                done = load_run(member_dir).summary
                probs.append(tested_probabilities(member, setup, member_dir, done))
            else:
                member_dir.mkdir(exist_ok=True)
                say(f"Ensemble member {i + 1}/{n} (seed {member.seed}):")
                fitted = fit(member, setup, member_dir, say, lang, load_checkpoint(member_dir))
                done = fitted.summary
                probs.append(fitted.test_probs)
            members.append({"seed": member.seed, "test_acc": done["test_acc"], "path": f"members/{member_dir.name}"})
            writer.write_summary(summary)
        y = setup.splits["test"].y.cpu()
        cumulative, losses = [], []
        for k in range(1, n + 1):
            avg = [torch.stack([p[h] for p in probs[:k]]).mean(0) for h in range(len(setup.info.heads))]
            accs = [float((a.argmax(1) == y[:, h]).double().mean()) for h, a in enumerate(avg)]
            nll = sum(float(F.nll_loss(a.clamp_min(1e-12).log(), y[:, h])) for h, a in enumerate(avg))
            cumulative.append(one_or_list(accs))
            losses.append(nll)
            say(f"[Ens: {k}] test accuracy: {fmt.acc_text(accs)}")
        summary["ensemble"]["test_acc"] = cumulative
        summary.update(
            status="completed", test_acc=cumulative[-1], test_loss=losses[-1], train_s=time.perf_counter() - t0
        )
        write_mean_metrics(path, [path / m["path"] for m in members], writer)
    except KeyboardInterrupt:
        summary["status"] = "interrupted"
        raise
    except DivergedError as e:
        summary.update(status="diverged", error=str(e))
        raise
    except Exception as e:
        summary.update(status="failed", error=f"{e.__class__.__name__}: {e}")
        raise
    finally:
        summary["ended_at"] = now_iso()
        summary["epochs_done"] = min(
            (load_run(path / m["path"]).summary.get("epochs_done", 0) for m in members), default=0
        )
        writer.write_summary(summary)
        writer.write_log(say.lines)


def tested_probabilities(cfg: Config, setup: Setup, path: Path, summary: dict[str, Any]) -> list[torch.Tensor]:
    """Test-split probabilities of a finished run from its saved weights (the tested ones: best or last)."""
    net, _ = build_model(cfg.model, setup.info.input_shape, setup.info.head_sizes)
    weights = "best.pt" if str(summary.get("tested", "")).startswith("best") else "model.pt"
    net.load_state_dict(torch.load(path / weights, map_location="cpu", weights_only=True))
    net.to(setup.device, memory_format=torch.channels_last) if setup.channels_last else net.to(setup.device)
    return probabilities(net, setup.splits["test"].x)


def resume(path: str | Path, *, lang: str = "ko", quiet: bool = False) -> Run:
    """Continue an unfinished run (killed, interrupted or diverged) from its last complete epoch.

    The run's own resolved config is used; the metrics, logs and random states continue as if the run
    had never stopped (on the CPU the final metrics are identical to an uninterrupted run's).
    """
    from .config import load_config

    path = Path(path)
    run = load_run(path)
    if run.status == "completed":
        raise RunDirError(f"{path}: the run is already completed; nothing to resume")
    cfg = load_config(run.config)
    setup = prepare(cfg)
    say = fmt.Printer(quiet)
    if cfg.train.ensemble > 1:
        train_ensemble(cfg, setup, path, say, lang)
    else:
        fit(cfg, setup, path, say, lang, load_checkpoint(path))
    return load_run(path)


def write_mean_metrics(path: Path, member_dirs: list[Path], writer: RunWriter) -> None:
    """The ensemble's metrics.jsonl: per epoch, the mean of the members' numeric single-head values."""
    runs = [load_run(d).metrics for d in member_dirs]
    for rows in zip(*runs, strict=False):  # members that stopped early have fewer epochs
        mean = {"epoch": rows[0]["epoch"]}
        for key, value in rows[0].items():
            if (
                key != "epoch"
                and isinstance(value, (int, float))
                and all(isinstance(r.get(key), (int, float)) for r in rows)
            ):
                mean[key] = sum(r[key] for r in rows) / len(rows)
        writer.add_metrics(mean)


def show_samples(net: Net, data: Batches, info: DataInfo, cfg: Config, lang: str, say: fmt.Printer) -> None:
    """Book's visualize(show_cnt): random test samples with their estimated distribution, estimate, answer."""
    say(fmt.visualization(cfg.name))
    g = torch.Generator().manual_seed(derive_seed(cfg.seed, "show"))
    pick = torch.randperm(data.n, generator=g)[: cfg.train.show].to(data.x.device)
    probs = probabilities(net, data.x[pick])
    answers = data.y[pick].cpu()
    for h, head in enumerate(info.heads):
        if len(info.heads) > 1:
            say(fmt.head_caption(head.name, lang))
        for i in range(len(pick)):
            p = probs[h][i]
            est, ans = head.classes[int(p.argmax())], head.classes[int(answers[i, h])]
            say(fmt.sample_line(p.tolist(), est, ans, lang, 8 if len(info.heads) > 1 else 0))


def save_param_hist(net: Net, file: Path) -> None:
    """The book's show_param_dist figure: 100-bin density histogram of weights and kernels, mu and sigma on it."""
    from .plots import param_hist

    param_hist(torch.cat([w.detach().reshape(-1).double().cpu() for w in weights_and_kernels(net)]).numpy(), file)


class Progress:
    """A Rich progress bar for the batches of an epoch, shown only on a terminal; updates cost no device sync."""

    def __init__(self, quiet: bool, steps: int):
        import sys

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
