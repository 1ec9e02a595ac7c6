"""The trainer: config → data → model → epochs → test → run directory, printing the book's report.

`train(cfg)` is one plain function whose epoch loop reads top to bottom. The data live as tensors on the
training device and batches are taken by index from an on-device permutation; per-step loss and accuracy
stay on the device and are read once per epoch, so the hot loop has no host round-trips.
"""

from __future__ import annotations

import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import __version__
from . import console as fmt
from .config import Config
from .data import DataInfo, Dataset, data_info, load_data
from .errors import ConfigError, DivergedError
from .model import Net, Row, build_model, init_weights, param_stats, weights_and_kernels
from .optim import make_optimizer
from .regularize import Regularizer
from .rundir import Run, RunWriter, create_run_dir, load_run

EVAL_BATCH = 512  # evaluation batch: large for speed, small enough for 96×96 images on a laptop


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
            raise ConfigError(
                f"'{spec}' requested but torch sees no CUDA device (torch {torch.__version__}); use cpu or auto",
                path="train.device",
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(
                f"'{spec}' requested but only {torch.cuda.device_count()} CUDA device(s) exist",
                path="train.device",
            )
    return dev


def check_config(cfg: Config) -> tuple[DataInfo, list[Row]]:
    """Everything that can be checked before any work: the data set's shape and the model built on it."""
    info = data_info(cfg.data)
    with torch.device("meta"):
        _, rows = build_model(cfg.model, info.input_shape, info.head_sizes)
    return info, rows


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
    return sum(
        F.cross_entropy(p, y[:, h], reduction=reduction) for h, p in enumerate(net.split_heads(logits))
    )


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
    """Softmax probabilities per head (book's get_estimate)."""
    was_training = net.training
    net.eval()
    out = [p.softmax(-1).cpu() for p in net.split_heads(net(x))]
    net.train(was_training)
    return out


def one_or_list(accs: list[float] | None) -> float | list[float] | None:
    """Single-head accuracies are stored as a number, multi-head ones as a list (one per head)."""
    if accs is None:
        return None
    return accs[0] if len(accs) == 1 else accs


def versions() -> dict[str, str]:
    return {"python": platform.python_version(), "torch": torch.__version__, "regbench": __version__}


def train(cfg: Config, out: str | Path = "runs", *, lang: str = "ko", quiet: bool = False) -> Run:
    """Train the configured model, print the book's report, and write a run directory under `out`.

    Returns the finished run as read back from disk. Raises RegbenchError subclasses for bad input
    (before anything is written), DivergedError for a NaN/inf loss (the run is kept, status diverged),
    and lets KeyboardInterrupt through after marking the run interrupted.
    """
    # -------------------------------------------------------------------------------- setup (no files yet)
    device = resolve_device(cfg.train.device)
    info, _ = check_config(cfg)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    data = load_data(cfg.data)
    torch.manual_seed(derive_seed(cfg.seed, "global"))  # anything outside our own generators
    net, _ = build_model(cfg.model, info.input_shape, info.head_sizes)
    init_weights(net, cfg.model.init, derive_seed(cfg.seed, "init"))
    channels_last = net.is_conv and device.type in ("cpu", "cuda")
    net.to(device, memory_format=torch.channels_last) if channels_last else net.to(device)
    train_set, val_set, test_set = (
        to_device(data, s, device, channels_last) for s in ("train", "val", "test")
    )
    bs = min(cfg.train.batch_size, train_set.n)
    steps = train_set.n // bs if cfg.train.drop_last else math.ceil(train_set.n / bs)
    order_gen = torch.Generator(device=device).manual_seed(derive_seed(cfg.seed, "order"))
    layer_gen = torch.Generator(device=device).manual_seed(derive_seed(cfg.seed, "layers"))
    net.set_generator(layer_gen)
    opt = make_optimizer(net.parameters(), cfg.optimizer, device)
    reg = Regularizer(cfg.regularizer, weights_and_kernels(net))

    # -------------------------------------------------------------------------------- run directory
    path = create_run_dir(out, cfg.name)
    writer = RunWriter(path)
    writer.write_config(cfg.to_dict())
    say = fmt.Printer(quiet)
    summary: dict[str, Any] = {
        "name": cfg.name,
        "status": "running",
        "seed": cfg.seed,
        "device": str(device),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "epochs": cfg.train.epochs,
        "epochs_done": 0,
        "data": {"name": cfg.data.name, "train": train_set.n, "val": val_set.n, "test": test_set.n},
        "input_shape": list(info.input_shape),
        "heads": [{"name": h.name, "classes": h.classes} for h in info.heads],
        "versions": versions(),
    }
    writer.write_summary(summary)

    t0 = t_report = time.perf_counter()
    best_val, best_epoch = -1.0, None
    try:
        if cfg.train.report > 0:
            say(fmt.train_started(cfg.name))
        with Progress(quiet, steps) as progress:
            for epoch in range(1, cfg.train.epochs + 1):
                # ---- train one epoch: losses and correct counts stay on the device
                net.train()
                progress.start(epoch)
                t_epoch = time.perf_counter()
                perm = torch.randperm(train_set.n, generator=order_gen, device=device)
                losses = torch.zeros(steps, device=device)
                correct = torch.zeros(len(net.heads), device=device, dtype=torch.long)
                for step in range(steps):
                    idx = perm[step * bs : (step + 1) * bs]
                    x, y = train_set.x[idx], train_set.y[idx]
                    logits = net(x)
                    loss = head_loss(net, logits, y)
                    penalty = reg.penalty()
                    if penalty is not None:
                        loss = loss + penalty
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    reg.decay(opt.param_groups[0]["lr"])
                    opt.step()
                    losses[step] = loss.detach()
                    correct += head_correct(net, logits, y)
                    progress.advance(step)
                # ---- once per epoch: read the sums (the only host sync of the epoch), evaluate, log
                cost = losses.sum().item() / steps
                if not math.isfinite(cost):
                    bad = int((~torch.isfinite(losses)).nonzero()[0, 0]) + 1
                    raise DivergedError(
                        f"{cfg.name}: loss became {losses[bad - 1].item()} in epoch {epoch}, step {bad}; the run is marked diverged"
                    )
                seen = steps * bs if cfg.train.drop_last else train_set.n
                train_acc = (correct.double() / seen).tolist()
                val_loss, val_acc = evaluate(net, val_set)
                now = time.perf_counter()
                row = {
                    "epoch": epoch,
                    "train_loss": cost,
                    "train_acc": one_or_list(train_acc),
                    "val_loss": val_loss,
                    "val_acc": one_or_list(val_acc),
                    "lr": opt.param_groups[0]["lr"],
                    "epoch_s": now - t_epoch,
                    "total_s": now - t0,
                }
                writer.add_metrics(row)
                if val_acc is not None and val_acc[0] > best_val:
                    best_val, best_epoch = val_acc[0], epoch
                summary.update(
                    epochs_done=epoch, train_acc=row["train_acc"], val_acc=row["val_acc"], train_loss=cost
                )
                if cfg.train.report > 0 and epoch % cfg.train.report == 0:
                    say(fmt.epoch_line(epoch, cost, train_acc, val_acc, int(now - t_report), int(now - t0)))
                    t_report = now
        train_s = time.perf_counter() - t0
        say(fmt.train_ended(cfg.name, int(train_s)))

        # -------------------------------------------------------------------------------- test and report
        t_test = time.perf_counter()
        test_loss, test_acc = evaluate(net, test_set)
        say(fmt.test_report(cfg.name, test_acc or [float("nan")], int(time.perf_counter() - t_test)))
        if cfg.train.show > 0 and test_set.n > 0:
            show_samples(net, test_set, info, cfg, lang, say)
        stats = param_stats(net)
        if cfg.train.show_params:
            say(fmt.near_zero_line(stats["near_zero"], stats["weights"]))
            say(fmt.param_dist_line(stats["mean"], stats["std"], lang))
            save_param_hist(net, path / "params_hist.png")
        writer.save_model(net.state_dict())
        summary.update(
            status="completed",
            test_acc=one_or_list(test_acc),
            test_loss=test_loss,
            train_s=train_s,
            best_val_acc=best_val if best_epoch else None,
            best_epoch=best_epoch,
            params=stats,
        )
    except KeyboardInterrupt:
        summary.update(status="interrupted", train_s=time.perf_counter() - t0)
        writer.save_model(net.state_dict())
        raise
    except DivergedError as e:
        summary.update(status="diverged", error=str(e), train_s=time.perf_counter() - t0)
        raise
    except Exception as e:
        summary.update(
            status="failed", error=f"{e.__class__.__name__}: {e}", train_s=time.perf_counter() - t0
        )
        raise
    finally:
        summary["ended_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        writer.write_summary(summary)
        writer.write_log(say.lines)
    return load_run(path)


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
            say(
                fmt.sample_line(
                    p.tolist(),
                    head.classes[int(p.argmax())],
                    head.classes[int(answers[i, h])],
                    lang,
                    8 if len(info.heads) > 1 else 0,
                )
            )


def save_param_hist(net: Net, file: Path) -> None:
    """The book's show_param_dist figure: 100-bin density histogram of weights and kernels, mu and sigma on it."""
    from .plots import param_hist

    param_hist(
        torch.cat([w.detach().reshape(-1).double().cpu() for w in weights_and_kernels(net)]).numpy(), file
    )


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
