"""The trainer: config → data → model → epochs → test → run directory, printing the book's report.

`train(cfg)` sets up and calls `fit`, one plain function whose epoch loop reads top to bottom. The data
live as tensors on the training device and batches are taken by index from an on-device permutation;
per-step losses and accuracy counts stay on the device and are read once per epoch, so the hot loop has
no host round-trips.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..config import Config
from ..core import console as fmt
from ..core.errors import ConfigError, DivergedError, RunDirError
from ..core.resources import check_fits, free_cores, freed_memory_kept, keep_freed_memory
from ..core.version import __version__
from ..data import DataInfo, Dataset, data_info, load_data
from ..data.augment import make_augment
from ..nn.model import Net, Row, build_model, init_weights, param_stats, relu_after_max, weights_and_kernels
from ..optim import lr_at, make_optimizer
from ..regularize import Regularizer
from ..rundir import METRICS, Run, RunWriter, create_run_dir, load_checkpoint, load_run, read_jsonl

EVAL_BATCH = 512  # evaluation batch: large for speed, small enough for 96×96 images on a laptop
GRAD_NORM_SAMPLES = 4  # gradient norms are measured on at most this many steps per epoch (kept cheap)


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
    """One split: inputs on the training device (or in host memory when `train.resident` is false), labels
    on the device."""

    x: torch.Tensor
    y: torch.Tensor  # (N, heads) int64

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    def rows(self, idx: torch.Tensor) -> torch.Tensor:
        """Inputs `idx` (a device tensor) on the device: a copy there, or from host memory."""
        if self.x.device == self.y.device:
            return take(self.x, idx)
        return take(self.x, idx.cpu()).to(self.y.device, non_blocking=True)

    def chunk(self, i: int, j: int) -> torch.Tensor:
        """Inputs i..j on the device."""
        return self.x[i:j].to(self.y.device, non_blocking=True)


def to_device(ds: Dataset, split: str, device: torch.device, channels_last: bool, resident: bool = True) -> Batches:
    x = ds.x[split].to(device) if resident else ds.x[split]
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    if not resident and device.type == "cuda":
        x = x.pin_memory()  # so that the per-batch copies can be asynchronous
    return Batches(x, ds.y[split].to(device))


def take(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows `idx` of a resident split. A channels_last image tensor is NHWC in memory, so selecting on that
    view is a plain row copy (advanced indexing on the NCHW view is a strided gather, many times slower);
    the result is channels_last again."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return x.permute(0, 2, 3, 1).index_select(0, idx).permute(0, 3, 1, 2)
    return x.index_select(0, idx)


def head_loss(net: Net, logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Softmax cross-entropy; with several heads, the sum over heads (book's Office-31)."""
    if len(net.heads) == 1:
        return F.cross_entropy(logits, y[:, 0], reduction=reduction)
    return sum(F.cross_entropy(p, y[:, h], reduction=reduction) for h, p in enumerate(net.split_heads(logits)))


def head_predictions(net: Net, logits: torch.Tensor) -> torch.Tensor:
    """Predicted class per head, (B, heads) (stays on the device)."""
    if len(net.heads) == 1:
        return logits.argmax(1, keepdim=True)
    return torch.stack([p.argmax(1) for p in net.split_heads(logits)], dim=1)


def head_correct(net: Net, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Correct predictions per head, as a (heads,) tensor (stays on the device)."""
    if len(net.heads) == 1:
        return (logits.argmax(1) == y[:, 0]).sum().unsqueeze(0)
    return torch.stack([(p.argmax(1) == y[:, h]).sum() for h, p in enumerate(net.split_heads(logits))])


@torch.inference_mode()
def evaluate(net: Net, data: Batches) -> tuple[float | None, list[float] | None]:
    """Mean loss and per-head accuracy over a whole split in evaluation mode (None for an empty split)."""
    if data.n == 0:
        return None, None
    was_training = net.training
    net.eval()
    loss = torch.zeros((), device=data.y.device, dtype=torch.float64)
    correct = torch.zeros(len(net.heads), device=data.y.device, dtype=torch.long)
    for i in range(0, data.n, EVAL_BATCH):
        logits = net(data.chunk(i, i + EVAL_BATCH))
        y = data.y[i : i + EVAL_BATCH]
        loss += head_loss(net, logits, y, reduction="sum")
        correct += head_correct(net, logits, y)
    net.train(was_training)
    return loss.item() / data.n, (correct.double() / data.n).tolist()  # one sync per evaluation


@torch.inference_mode()
def probabilities(net: Net, x: torch.Tensor) -> list[torch.Tensor]:
    """Softmax probabilities per head (book's get_estimate), in evaluation batches, on the CPU."""
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    parts = [
        [p.softmax(-1).cpu() for p in net.split_heads(net(x[i : i + EVAL_BATCH].to(device)))]
        for i in range(0, len(x), EVAL_BATCH)
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


def prepare(cfg: Config, threads: int | None = None) -> Setup:
    """Resolve the device, load the data and put every split on the device (no files written yet).

    CPU threads: `train.threads`, else `threads` (a resumed run's own count, so that it continues
    bit-identically), else the cores not busy with other processes right now (OpenMP threads that share a
    busy core spin and slow small models 30–100×). The count is recorded in the summary: the same config,
    seed and thread count give identical metrics.
    """
    device = resolve_device(cfg.train.device)
    info, rows = check_config(cfg)
    params = sum(r.weights + r.other for r in rows) * cfg.train.ensemble
    check_fits(
        params * 4 * 4, f"the model ({params:,} parameters with gradients and optimizer state)", "model.layers", device
    )
    if device.type == "cpu":
        torch.set_num_threads(cfg.train.threads or threads or free_cores())
    if cfg.train.reuse_memory:
        keep_freed_memory()
    data = load_data(cfg.data)
    needs_val = cfg.train.early_stop is not None or cfg.train.test_on == "best"
    if needs_val and data.size("val") == 0:
        key = "train.early_stop" if cfg.train.early_stop is not None else "train.test_on"
        raise ConfigError("needs a validation split; set data.split.val > 0", path=key)
    channels_last = cfg.train.channels_last and len(info.input_shape) == 3 and device.type in ("cpu", "cuda")
    setup = Setup(device, info, data, channels_last)
    resident = cfg.train.resident
    setup.splits = {s: to_device(data, s, device, channels_last, resident) for s in ("train", "val", "test")}
    return setup


def train(
    cfg: Config,
    out: str | Path = "runs",
    *,
    lang: str = "ko",
    quiet: bool = False,
    stack: int | None = None,
    report_test: bool = True,
) -> Run:
    """Train the configured model, print the book's report, and write a run directory under `out`.

    Ensemble members train side by side (regbench.training.group) unless `stack` is 1, at most `stack` at a time.
    Returns the finished run as read back from disk. Raises RegbenchError subclasses for bad input
    (before anything is written), DivergedError for a NaN/inf loss (the run is kept, status diverged),
    and lets KeyboardInterrupt through after marking the run interrupted. With `report_test=False` the run
    is tested and saved as always, but the printout stops after `train ended` (the book's `train()`
    alone; `regbench.book` prints the test report, samples and parameters on request).
    """
    setup = prepare(cfg)
    path = create_run_dir(out, cfg.name)
    say = fmt.Printer(quiet)
    if cfg.train.ensemble > 1:
        train_ensemble(cfg, setup, path, say, lang, stack)
    else:
        fit(cfg, setup, path, say, lang, report_test=report_test)
    return load_run(path)


@dataclass
class Fitted:
    net: Net
    summary: dict[str, Any]
    test_probs: list[torch.Tensor] | None  # per head, (N_test, classes)


class Member:
    """One run's bookkeeping: run directory, summary, log, best weights, early stopping and checkpoints.

    A single run has one; K models trained side by side (regbench.training.group) have one each, so every member
    writes an ordinary run directory.
    """

    def __init__(self, cfg: Config, setup: Setup, path: Path, say: fmt.Printer, epochs: int, ckpt: dict | None = None):
        tc = cfg.train
        self.cfg, self.path, self.say = cfg, path, say
        self.writer = RunWriter(path)
        self.stopper = EarlyStopper(tc.early_stop) if tc.early_stop else None
        self.keep_best = self.stopper is not None or tc.test_on == "best"
        self.best_state: dict[str, torch.Tensor] | None = None
        self.row: dict[str, Any] = {}
        self.active = True  # False once it diverged or stopped early (stacked members are then frozen)
        if ckpt is None:
            self.writer.write_config(cfg.to_dict())
            self.writer.restore([], 0)  # a run restarted from scratch keeps nothing from a killed first epoch
            n = {s: setup.splits[s].n for s in ("train", "val", "test")}
            self.summary: dict[str, Any] = {
                "name": cfg.name,
                "status": "running",
                "seed": cfg.seed,
                "device": str(setup.device),
                "threads": torch.get_num_threads() if setup.device.type == "cpu" else None,
                "reuse_memory": freed_memory_kept(),  # in effect: process-wide once any run asked for it
                "host": socket.gethostname(),  # with pid: a reader can tell a running run from a killed one
                "pid": os.getpid(),
                "started_at": now_iso(),
                "epochs": epochs,
                "epochs_done": 0,
                "steps_done": 0,
                "data": {"name": cfg.data.name, **n},
                "normalization": setup.data.norm,  # what Run.predict applies to raw inputs
                "input_shape": list(setup.info.input_shape),
                "heads": [{"name": h.name, "classes": h.classes} for h in setup.info.heads],
                "versions": versions(),
            }
            self.first_epoch, t_offset = 1, 0.0
        else:  # continue after the checkpoint's epoch, with every state as it was then
            self.summary = {**ckpt["summary"], "status": "running", "host": socket.gethostname(), "pid": os.getpid()}
            self.summary.setdefault("resumed", []).append({"after_epoch": ckpt["epoch"], "at": now_iso()})
            if epochs != self.summary.get("epochs"):  # trained on to more epochs
                self.summary["resumed"][-1]["epochs"] = epochs
                self.summary["epochs"] = epochs
            rows = ckpt.get("metrics")  # older checkpoints carry them; metrics.jsonl always has them
            if rows is None:
                rows = [r for r in read_jsonl(path / METRICS) if r.get("epoch", 0) <= ckpt["epoch"]]
            self.writer.restore(rows, ckpt["summary"]["steps_done"])
            say.lines[:0] = ckpt["log"]
            if self.stopper:
                self.stopper.bad = ckpt["stopper_bad"]
            if self.keep_best and (path / "best.pt").is_file():
                self.best_state = torch.load(path / "best.pt", map_location=setup.device, weights_only=True)
            self.first_epoch, t_offset = ckpt["epoch"] + 1, ckpt["summary"].get("train_s", 0.0)
        self.writer.write_summary(self.summary, now=True)
        self.t0 = self.t_report = time.perf_counter() - t_offset
        self.last_checkpoint = time.perf_counter()
        self.checkpointed = ckpt["epoch"] if ckpt else 0  # the epoch of the last checkpoint written

    def diverged_message(self, epoch: int, start: int, losses: torch.Tensor) -> str:
        bad = int((~torch.isfinite(losses)).nonzero()[0, 0])
        kept = (
            f"its checkpoint of epoch {self.checkpointed} is kept"
            if self.checkpointed
            else "no checkpoint had been written yet"
        )
        return (
            f"{self.cfg.name}: loss became {losses[bad].item()} in epoch {epoch}, step {bad + 1} of {len(losses)}"
            f" (step {start + bad + 1} of the run); the run is marked diverged and {kept}; lower the learning rate"
        )

    def end_epoch(self, epoch: int, start: int, losses: torch.Tensor, stats: dict[str, Any], state) -> bool:
        """Log one finished epoch (metrics, steps, summary, report line), keep the best weights (`state()`
        gives them) and apply early stopping; True when the member stops here."""
        tc, summary = self.cfg.train, self.summary
        n_steps = len(losses)
        cost, train_acc, val_loss, val_acc = stats["cost"], stats["train_acc"], stats["val_loss"], stats["val_acc"]
        row = {"epoch": epoch, "train_loss": cost, "train_acc": one_or_list(train_acc)}
        row.update(val_loss=val_loss, val_acc=one_or_list(val_acc))
        if tc.eval_train:
            row["train_eval_loss"], row["train_eval_acc"] = (
                stats["train_eval_loss"],
                one_or_list(stats["train_eval_acc"]),
            )
        now = time.perf_counter()
        row.update(lr=stats["lr"], grad_norm=stats["grad_norm"], grad_norm_first=stats["grad_norm_first"])
        row.update(
            epoch_s=now - stats["t_epoch"], total_s=now - self.t0, steps_s=stats["steps_s"], eval_s=stats["eval_s"]
        )
        self.row = row
        self.writer.add_metrics(row)
        if tc.log_every:
            logged = [s for s in range(n_steps) if (start + s) % tc.log_every == 0]
            values = losses[logged].tolist() if logged else []
            self.writer.add_steps(
                [{"step": start + s, "epoch": epoch, "loss": v} for s, v in zip(logged, values, strict=True)]
            )
        summary.update(epochs_done=epoch, steps_done=start + n_steps, train_loss=cost, train_s=now - self.t0)
        summary.update(train_acc=row["train_acc"], val_acc=row["val_acc"], val_loss=val_loss)
        if tc.report > 0 and epoch % tc.report == 0:
            line = fmt.epoch_line(epoch, cost, train_acc, val_acc, int(now - self.t_report), int(now - self.t0))
            if tc.eval_train:
                line += f" [train eval {fmt.acc_text(stats['train_eval_acc'])}]"
            self.say(line)
            self.t_report = now
        # best epoch and early stopping, watched on the first head
        improved = val_acc is not None and track_best(summary, epoch, val_loss, val_acc[0], tc.early_stop)
        if improved and self.keep_best:
            self.best_state = state()
            self.writer.save_model(self.best_state, "best.pt")
        stop = self.stopper is not None and self.stopper.stop(improved)
        if stop:
            summary["stopped_early"] = epoch
            es = tc.early_stop
            self.say(f"Early stop after epoch {epoch}: no {es.metric} improvement in {es.patience} epochs")
        return stop

    def checkpoint_due(self, last_epoch: bool) -> bool:
        """Checkpoint after this epoch? After every epoch with `checkpoint_every: 0`; else once that many
        seconds passed since the last one (very short epochs would otherwise pay for one each), and
        always after the last epoch. A resume continues exactly from whichever was written last."""
        every = self.cfg.train.checkpoint_every
        return last_epoch or every <= 0 or time.perf_counter() - self.last_checkpoint >= every

    def checkpoint(self, epoch: int, model: dict, optimizer: dict, rng: dict) -> None:
        """Everything needed to continue after `epoch` (what `resume` reads), then the summary."""
        self.last_checkpoint, self.checkpointed = time.perf_counter(), epoch
        state = {"epoch": epoch, "model": model, "optimizer": optimizer, "rng": rng, "summary": self.summary}
        state.update(log=self.say.lines, stopper_bad=self.stopper.bad if self.stopper else 0)
        self.writer.save_checkpoint(state)
        self.writer.write_summary(self.summary)

    def end_training(self) -> None:
        """The training loop is over: its time (tests excluded, as the book's `train ended in N secs`)."""
        self.train_s = time.perf_counter() - self.t0
        self.say(fmt.train_ended(self.cfg.name, int(self.train_s)))

    def finish(
        self, last: dict, tested: dict, results: dict[str, Any], info: DataInfo, lang: str, report_test: bool = True
    ) -> None:
        """Save the last weights, print the book's test report, samples and parameter statistics (only
        saved, not printed, with `report_test=False`)."""
        cfg, summary, say = self.cfg, self.summary, self.say
        train_s = self.train_s
        self.writer.save_model(last)
        if tested is not last:
            summary["tested"] = f"best (epoch {summary['best_epoch']})"
        test_loss, test_acc, probs = results["test_loss"], results["test_acc"], results["test_probs"]
        if report_test:
            say(fmt.test_report(cfg.name, test_acc or [float("nan")], int(results["test_s"])))
        if report_test and cfg.train.show > 0 and probs is not None:
            show_samples(probs, results["test_y"], info, cfg, lang, say)
        stats = results["params"]
        if cfg.train.show_params:
            if report_test:
                say(fmt.near_zero_line(stats["near_zero"], stats["weights"]))
                say(fmt.param_dist_line(stats["mean"], stats["std"], lang))
            save_param_hist(results["weights"], self.path / "params_hist.png")
        final_train = first(self.row.get("train_eval_acc", summary.get("train_acc")))
        final_val = first(summary.get("val_acc"))
        gap = None if final_train is None or final_val is None else final_train - final_val
        summary.update(status="completed", test_acc=one_or_list(test_acc), test_loss=test_loss, train_s=train_s)
        summary.update(gap=gap, params=stats, test_s=results["test_s"])

    def close(self, status: str | None = None, error: str | None = None) -> None:
        """Write the summary and log (always, whatever happened); `status` overrides a failed run's."""
        if status is not None:
            self.summary["status"] = status
        if error is not None:
            self.summary["error"] = error
        self.summary["ended_at"] = now_iso()
        self.writer.write_summary(self.summary, now=True)
        self.writer.write_log(self.say.lines)


def make_gens(seed: int, device: torch.device) -> dict[str, torch.Generator]:
    """The run's own random streams: batch order, dropout/noise draws, augmentation."""
    return {purpose: torch.Generator(device=device).manual_seed(derive_seed(seed, purpose)) for purpose in GEN_PURPOSES}


GEN_PURPOSES = ("order", "layers", "augment")


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


def match_layouts(opt: torch.optim.Optimizer) -> None:
    """Give each optimizer state tensor its parameter's memory layout. A checkpoint written by a stacked
    member holds NCHW moments; the fused kernels walk a channels_last weight and its moments as flat
    memory, so a layout mismatch would pair the wrong elements without an error."""
    for group in opt.param_groups:
        for p in group["params"]:
            state = opt.state.get(p, {})
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and value.shape == p.shape and value.stride() != p.stride():
                    state[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)


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


def train_ensemble(
    cfg: Config, setup: Setup, path: Path, say: fmt.Printer, lang: str, stack: int | None = None
) -> None:
    """`train.ensemble: N`: N members with seeds seed, seed+1, … (each a normal run directory under
    `members/`, trained side by side unless `stack` is 1), then the test accuracy of the averaged softmax
    of the first k members, k = 1…N. Resuming reuses finished members and continues unfinished ones."""
    from .group import fit_members

    n = cfg.train.ensemble
    writer = RunWriter(path)
    writer.write_config(cfg.to_dict())
    summary: dict[str, Any] = {"name": cfg.name, "status": "running", "seed": cfg.seed, "device": str(setup.device)}
    summary.update(host=socket.gethostname(), pid=os.getpid())
    summary.update(started_at=now_iso(), ensemble={"members": []}, versions=versions())
    writer.write_summary(summary, now=True)
    (path / "members").mkdir(exist_ok=True)
    t0 = time.perf_counter()
    cfgs = [
        dataclasses.replace(cfg, seed=cfg.seed + i, train=dataclasses.replace(cfg.train, ensemble=1)) for i in range(n)
    ]
    dirs = [path / "members" / f"m{i + 1}-seed{c.seed}" for i, c in enumerate(cfgs)]
    results: dict[int, tuple[dict, list[torch.Tensor] | None]] = {}
    try:
        fresh = []
        for i, (member, member_dir) in enumerate(zip(cfgs, dirs, strict=True)):
            if member_dir.is_dir() and load_run(member_dir).status == "completed":  # resuming: already done
                done = load_run(member_dir).summary
                results[i] = done, tested_probabilities(member, setup, member_dir, done)
            elif member_dir.is_dir() and load_checkpoint(member_dir) is not None:  # resuming mid-member
                say(f"Ensemble member {i + 1}/{n} (seed {member.seed}), resumed:")
                fitted = fit(member, setup, member_dir, say, lang, load_checkpoint(member_dir))
                results[i] = fitted.summary, fitted.test_probs
            else:
                member_dir.mkdir(exist_ok=True)
                fresh.append(i)
        if fresh:
            say(
                f"Ensemble members {', '.join(str(i + 1) for i in fresh)} of {n} (seeds {', '.join(str(cfgs[i].seed) for i in fresh)}):"
            )
            fitted = fit_members([cfgs[i] for i in fresh], setup, [dirs[i] for i in fresh], say, lang, stack)
            for i, f in zip(fresh, fitted, strict=True):
                if f.summary["status"] != "completed":
                    raise DivergedError(
                        f"ensemble member {i + 1} (seed {cfgs[i].seed}): {f.summary.get('error', 'diverged')}"
                    )
                results[i] = f.summary, f.test_probs
        members, probs = summary["ensemble"]["members"], []
        for i in range(n):
            done, member_probs = results[i]
            members.append({"seed": cfgs[i].seed, "test_acc": done["test_acc"], "path": f"members/{dirs[i].name}"})
            probs.append(member_probs)
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
        done_dirs = [d for d in dirs if (d / "summary.json").is_file()]
        summary["epochs_done"] = min((load_run(d).summary.get("epochs_done", 0) for d in done_dirs), default=0)
        writer.write_summary(summary, now=True)
        writer.write_log(say.lines)


def tested_probabilities(cfg: Config, setup: Setup, path: Path, summary: dict[str, Any]) -> list[torch.Tensor]:
    """Test-split probabilities of a finished run from its saved weights (the tested ones: best or last)."""
    net, _ = build_model(cfg.model, setup.info.input_shape, setup.info.head_sizes)
    weights = "best.pt" if str(summary.get("tested", "")).startswith("best") else "model.pt"
    net.load_state_dict(torch.load(path / weights, map_location="cpu", weights_only=True))
    net.to(setup.device, memory_format=torch.channels_last) if setup.channels_last else net.to(setup.device)
    return probabilities(net, setup.splits["test"].x)


def resume(path: str | Path, *, epochs: int | None = None, lang: str = "ko", quiet: bool = False) -> Run:
    """Continue an unfinished run (killed or interrupted) from its last checkpoint; a diverged run is refused.

    The run's own resolved config is used; the metrics, logs and random states continue as if the run
    had never stopped (on the CPU the final metrics are identical to an uninterrupted run's). With
    `epochs` (more than the run's), a run, completed or not, trains on to that many epochs, as if it had
    been started with them (config.yaml and the summary say so; the test report is made anew).
    """
    from ..config import load_config

    path = Path(path)
    run = load_run(path)
    if run.status == "diverged":
        raise RunDirError(
            f"{path}: the run diverged; resuming would repeat the same steps and diverge again "
            "(train its config.yaml again with a lower optimizer.lr)"
        )
    cfg = load_config(run.config)
    lang = run.summary.get("lang", lang)
    if epochs is not None:
        cfg = extended(cfg, run, epochs)
    elif run.status == "completed":
        raise RunDirError(f"{path}: the run is already completed; nothing to resume (--epochs N trains it on)")
    setup = prepare(cfg, threads=run.summary.get("threads"))
    if epochs is not None:
        RunWriter(path).write_config(cfg.to_dict())
    say = fmt.Printer(quiet)
    if cfg.train.ensemble > 1:
        train_ensemble(cfg, setup, path, say, lang)
    else:
        fit(cfg, setup, path, say, lang, load_checkpoint(path))
    return load_run(path)


def extended(cfg: Config, run: Run, epochs: int) -> Config:
    """`cfg` with `epochs` epochs, if training the run on to them gives what a run started with them gives."""
    import dataclasses

    tc, where = cfg.train, f"{run.path}: cannot train on to {epochs} epochs"
    if tc.iterations is not None:
        raise RunDirError(f"{where}: its length is train.iterations ({tc.iterations}); train its config again")
    if epochs <= tc.epochs:
        done = run.summary.get("epochs_done", 0)
        finish = "" if done >= tc.epochs else f" ({done} done so far; --resume alone finishes them)"
        raise RunDirError(f"{where}: its config already has train.epochs {tc.epochs}{finish}; give more")
    if run.summary.get("stopped_early"):
        raise RunDirError(f"{where}: early stopping ended it at epoch {run.summary.get('epochs_done')}")
    if cfg.optimizer.schedule == "cosine":
        raise RunDirError(f"{where}: its cosine schedule spans the planned {tc.epochs} epochs")
    if tc.ensemble > 1:
        raise RunDirError(f"{where}: an ensemble's members cannot be extended; train its config again")
    if not (run.path / "checkpoint.pt").is_file():
        raise RunDirError(f"{where}: it has no checkpoint.pt to continue from")
    return dataclasses.replace(cfg, train=dataclasses.replace(tc, epochs=epochs))


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


def show_samples(probs: list[torch.Tensor], answers: torch.Tensor, info: DataInfo, cfg: Config, lang: str, say) -> None:
    """Book's visualize(show_cnt): random test samples with their estimated distribution, estimate, answer.

    `probs` are the test split's probabilities per head, `answers` its labels (N, heads); the samples are
    picked by the run's seed (`pick_samples`).
    """
    say(fmt.visualization(cfg.name))
    pick = pick_samples(len(answers), cfg.seed, cfg.train.show)
    for line in lines_for([p[pick] for p in probs], answers[pick], info, lang):
        say(line)


def pick_samples(n: int, seed: int, count: int) -> torch.Tensor:
    """Indices of the `count` test samples shown for a run with `seed` (the same ones on every call)."""
    g = torch.Generator().manual_seed(derive_seed(seed, "show"))
    return torch.randperm(n, generator=g)[:count]


def sample_lines(net: Net, x: torch.Tensor, y: torch.Tensor, info: DataInfo, lang: str) -> list[str]:
    """The book's show_select_results for samples `x` with answers `y` (probabilities from `net`)."""
    return lines_for(probabilities(net, x), y.cpu(), info, lang)


def lines_for(probs: list[torch.Tensor], answers: torch.Tensor, info: DataInfo, lang: str) -> list[str]:
    """One line per sample (per head, under the head's caption when there are several)."""
    lines = []
    for h, head in enumerate(info.heads):
        if len(info.heads) > 1:
            lines.append(fmt.head_caption(head.name, lang))
        for i in range(len(answers)):
            p = probs[h][i]
            est, ans = head.classes[int(p.argmax())], head.classes[int(answers[i, h])]
            lines.append(fmt.sample_line(p.tolist(), est, ans, lang, 8 if len(info.heads) > 1 else 0))
    return lines


def save_param_hist(weights: list[torch.Tensor] | torch.nn.Module, file: Path) -> None:
    """The book's show_param_dist figure: 100-bin density histogram of weights and kernels (of a model, or
    given as tensors), mu and sigma on it."""
    from ..analysis.plots import param_hist

    if isinstance(weights, torch.nn.Module):
        weights = weights_and_kernels(weights)
    param_hist(torch.cat([w.detach().reshape(-1).double().cpu() for w in weights]).numpy(), file)


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
