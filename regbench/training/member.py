"""One run's bookkeeping: its run directory, summary, log, best weights, early stopping and checkpoints."""

from __future__ import annotations

import math
import os
import platform
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import Config
from ..core import console
from ..core.errors import DivergedError, Pruned, RegbenchError
from ..core.provenance import provenance
from ..core.resources import freed_memory_kept
from ..core.values import first_head, one_or_list
from ..core.version import __version__
from ..data import DataInfo
from ..nn.model import weights_and_kernels
from ..rundir import METRICS, RunWriter, read_jsonl
from .curves import draw_run_curves
from .diagnostics import bn_note
from .infer import show_samples
from .plan import Setup
from .predictions import save_predictions

EXPLODE = 1e4  # a cost beyond this × the first step's loss has exploded: the run is marked diverged


@dataclass
class EpochStats:
    """One member's numbers for one finished epoch (accuracies per head), as the loop measured them."""

    cost: float
    train_acc: list[float]
    val_loss: float | None
    val_acc: list[float] | None
    lr: float
    grad_norm: float
    grad_norm_first: float
    t_epoch: float  # perf_counter at the epoch's start
    steps_s: float
    eval_s: float
    train_eval_loss: float | None = None  # with train.eval_train
    train_eval_acc: list[float] | None = None


@dataclass
class TestResult:
    """One member's test phase: loss and accuracies per head, probabilities, parameter statistics."""

    loss: float | None
    acc: list[float] | None
    probs: list[torch.Tensor] | None  # per head, (N_test, classes)
    answers: torch.Tensor  # the test labels, (N_test, heads)
    seconds: float
    params: dict[str, float | int]
    weights: list[torch.Tensor]
    bn: dict[str, Any] | None = None  # diagnostics.bn_residue: running averages that have not converged


def status_of(e: BaseException) -> tuple[str, str | None]:
    """The run status an exception ends a run with, and the error recorded with it (one line): the one
    mapping used by the training loop and the runner."""
    if isinstance(e, KeyboardInterrupt):
        return "interrupted", None
    if isinstance(e, Pruned):
        return "pruned", str(e)
    if isinstance(e, DivergedError):
        return "diverged", str(e)
    if isinstance(e, RegbenchError):
        return "failed", str(e)
    first_line = str(e).splitlines()[0] if str(e) else ""
    return "failed", f"{e.__class__.__name__}: {first_line}"


def versions() -> dict[str, str]:
    return {"python": platform.python_version(), "torch": str(torch.__version__), "regbench": __version__}


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class Member:
    """One run's bookkeeping: run directory, summary, log, best weights, early stopping and checkpoints.

    A single run has one; K models trained side by side (`engines.Stacked`) have one each, so every member
    writes an ordinary run directory.
    """

    def __init__(
        self, cfg: Config, setup: Setup, path: Path, say: console.Printer, epochs: int, ckpt: dict | None = None
    ):
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
                "provenance": provenance(),  # git commit of the config's repository, package-set hash
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
        self.t0 = time.perf_counter() - t_offset
        # the book's epoch seconds are differences of one integer clock (whole seconds since training began),
        # so a line's own seconds add up to its total; a resumed run's first line counts from the resume
        self.tick_report = int(t_offset)
        self.checkpointed = ckpt["epoch"] if ckpt else 0  # the epoch of the last checkpoint written

    def explodes(self, cost: float) -> bool:
        """Whether the epoch's cost is non-finite or beyond EXPLODE × the run's first step loss (at least 1, so
        a tiny first loss trips nothing; a penalty-mode cost stays within a few times its first value)."""
        first = self.summary.get("first_loss")
        if not math.isfinite(cost):
            return True
        return isinstance(first, float) and cost > EXPLODE * max(first, 1.0)

    def diverged_message(self, epoch: int, start: int, losses: torch.Tensor) -> str:
        first = self.summary.get("first_loss")
        limit = EXPLODE * max(first, 1.0) if isinstance(first, float) else math.inf
        bad_steps = (~torch.isfinite(losses) | (losses > limit)).nonzero()
        bad = int(bad_steps[0, 0]) if len(bad_steps) else len(losses) - 1
        kept = (
            f"its checkpoint of epoch {self.checkpointed} is kept"
            if self.checkpointed
            else "no checkpoint had been written yet"
        )
        return (
            f"{self.cfg.name}: loss became {losses[bad].item():.4g} in epoch {epoch}, step {bad + 1} of {len(losses)}"
            + (f" (more than {EXPLODE:.0e} × the first step's)" if math.isfinite(losses[bad].item()) else "")
            + f" (step {start + bad + 1} of the run); the run is marked diverged and {kept}; lower the learning rate"
        )

    def end_epoch(self, epoch: int, start: int, losses: torch.Tensor, stats: EpochStats, state) -> bool:
        """Log one finished epoch (metrics, steps, summary, report line), keep the best weights (`state()`
        gives them) and apply early stopping; True when the member stops here."""
        tc, summary = self.cfg.train, self.summary
        n_steps = len(losses)
        cost, val_loss, val_acc = stats.cost, stats.val_loss, stats.val_acc
        row = {"epoch": epoch, "train_loss": cost, "train_acc": one_or_list(stats.train_acc)}
        row.update(val_loss=val_loss, val_acc=one_or_list(val_acc))
        if tc.eval_train:
            row.update(train_eval_loss=stats.train_eval_loss, train_eval_acc=one_or_list(stats.train_eval_acc))
        now = time.perf_counter()
        row.update(lr=stats.lr, grad_norm=stats.grad_norm, grad_norm_first=stats.grad_norm_first)
        row.update(epoch_s=now - stats.t_epoch, total_s=now - self.t0, steps_s=stats.steps_s, eval_s=stats.eval_s)
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
            total = int(now - self.t0)
            secs, self.tick_report = total - self.tick_report, total
            line = console.epoch_line(epoch, cost, stats.train_acc, val_acc, secs, total)
            if tc.eval_train:
                line += f" [train eval {console.acc_text(stats.train_eval_acc)}]"
            self.say(line)
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

    def checkpoint(self, epoch: int, model: dict, optimizer: dict, rng: dict) -> None:
        """Everything needed to continue after `epoch` (what `resume` reads), then the summary."""
        self.checkpointed = epoch
        state = {"epoch": epoch, "model": model, "optimizer": optimizer, "rng": rng, "summary": self.summary}
        state.update(log=self.say.lines, stopper_bad=self.stopper.bad if self.stopper else 0)
        # the record resume rebuilds from and checks against (metrics.jsonl and config.yaml can be damaged or edited)
        state.update(metrics=self.writer.rows, config=self.cfg.to_dict())
        self.writer.save_checkpoint(state)
        self.writer.write_summary(self.summary)

    def end_training(self) -> None:
        """The training loop is over: its time (tests excluded, as the book's `train ended in N secs`)."""
        self.train_s = time.perf_counter() - self.t0
        self.say(console.train_ended(self.cfg.name, int(self.train_s)))

    def finish(
        self, last: dict, tested: dict, result: TestResult, info: DataInfo, lang: str, report_test: bool
    ) -> None:
        """Save the last weights, print the book's test report, samples and parameter statistics (only
        saved, not printed, with `report_test=False`)."""
        cfg, summary, say = self.cfg, self.summary, self.say
        self.writer.save_model(last)
        if tested is not last:
            summary["tested"] = f"best (epoch {summary['best_epoch']})"
        if report_test:
            say(console.test_report(cfg.name, result.acc or [float("nan")], int(result.seconds)))
        if result.bn is not None:
            summary["bn_unconverged"] = result.bn
            if report_test:
                say(bn_note(result.bn, lang))
        if result.probs is not None:
            save_predictions(self.path, result.probs, result.answers)
        if report_test and cfg.train.show > 0 and result.probs is not None:
            show_samples(result.probs, result.answers, info, cfg, lang, say)
        stats = result.params
        if cfg.train.show_params:  # mean and std stay in summary.json's params: the book prints no line of them
            if report_test:
                say(console.near_zero_line(stats["near_zero"], stats["weights"]))
            save_param_hist(result.weights, self.path / "params_hist.png")
        if note := draw_run_curves(self.path, self.writer.rows, cfg.name):  # curves.png, issue 22
            say(note)
        final_train = first_head(self.row.get("train_eval_acc", summary.get("train_acc")))
        final_val = first_head(summary.get("val_acc"))
        gap = None if final_train is None or final_val is None else final_train - final_val
        summary.update(status="completed", test_acc=one_or_list(result.acc), test_loss=result.loss)
        summary.update(train_s=self.train_s, gap=gap, params=stats, test_s=result.seconds)
        summary["train_s_share"] = self.train_s / summary.get("members", 1)  # the pass's wall time per member

    def close(self, status: str | None = None, error: str | None = None) -> None:
        """Write the summary and log (always, whatever happened); `status` overrides a failed run's."""
        if status is not None:
            self.summary["status"] = status
        if status == "pruned":  # finished, not failed: the pruner's reason is not an error
            self.summary.pop("error", None)
            self.summary["pruned"] = error
        elif error is not None:
            self.summary["error"] = error
        self.summary["ended_at"] = now_iso()
        self.writer.write_summary(self.summary, now=True)
        self.writer.write_log(self.say.lines)


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


def save_param_hist(weights: list[torch.Tensor] | torch.nn.Module, file: Path) -> None:
    """The book's show_param_dist figure: 100-bin density histogram of weights and kernels (of a model, or
    given as tensors), mu and sigma on it."""
    from ..core.figures import param_hist

    if isinstance(weights, torch.nn.Module):
        weights = weights_and_kernels(weights)
    param_hist(torch.cat([w.detach().reshape(-1).double().cpu() for w in weights]).numpy(), file)
