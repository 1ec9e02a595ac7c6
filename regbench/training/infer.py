"""Evaluation and prediction: losses, accuracies and probabilities of one model or of K stacked members."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..config import Config
from ..core import console
from ..core.errors import RunDirError
from ..data import DataInfo
from ..data.normalize import apply_recorded
from ..nn.model import Net, build_model
from ..resolve import EVAL_BATCH  # evaluation batch: large for speed, small enough for 96×96 images on a laptop
from ..rundir import MODEL, SUMMARY, Run, load_run
from ..stacked.layers import from_members
from .plan import Batches, Setup, derive_seed


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


def tested_probabilities(cfg: Config, setup: Setup, path: Path, summary: dict[str, Any]) -> list[torch.Tensor]:
    """Test-split probabilities of a finished run from its saved weights (the tested ones: best or last)."""
    net, _ = build_model(cfg.model, setup.info.input_shape, setup.info.head_sizes)
    weights = "best.pt" if str(summary.get("tested", "")).startswith("best") else "model.pt"
    net.load_state_dict(torch.load(path / weights, map_location="cpu", weights_only=True))
    net.to(setup.device, memory_format=torch.channels_last) if setup.channels_last else net.to(setup.device)
    return probabilities(net, setup.splits["test"].x)


def show_samples(probs: list[torch.Tensor], answers: torch.Tensor, info: DataInfo, cfg: Config, lang: str, say) -> None:
    """Book's visualize(show_cnt): random test samples with their estimated distribution, estimate, answer.

    `probs` are the test split's probabilities per head, `answers` its labels (N, heads); the samples are
    picked by the run's seed (`pick_samples`).
    """
    say(console.visualization(cfg.name))
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
            lines.append(console.head_caption(head.name, lang))
        for i in range(len(answers)):
            p = probs[h][i]
            est, ans = head.classes[int(p.argmax())], head.classes[int(answers[i, h])]
            lines.append(console.sample_line(p.tolist(), est, ans, lang, 8 if len(info.heads) > 1 else 0))
    return lines


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


def load_model(run: Run, weights: str = MODEL) -> Net:
    """A run's trained model: built from its resolved config for the run's input shape and heads, with
    `weights` loaded (model.pt: the last epoch; best.pt: the best validation epoch), in evaluation mode on
    the CPU. Raises RunDirError for a run without them or whose weights do not fit its config."""
    from ..resolve import load_config

    shape, heads = run.summary.get("input_shape"), run.summary.get("heads")
    if not isinstance(shape, list) or not isinstance(heads, list) or not heads:
        hint = "; an ensemble keeps one per member under members/" if "ensemble" in run.summary else ""
        raise RunDirError(f"{run.path}: {SUMMARY} has no input_shape/heads (status {run.status}){hint}")
    net, _ = build_model(load_config(run.config).model, tuple(shape), [len(h["classes"]) for h in heads])
    try:
        net.load_state_dict(run.state_dict(weights))
    except RuntimeError as e:
        raise RunDirError(f"{run.path / weights}: does not fit the config's model ({str(e).splitlines()[0]})") from None
    return net.eval()


@dataclass(repr=False)
class TrainedRun(Run):
    """A run directory with its trained model, as `regbench.train` and `regbench.load_run` return it:
    `model()` rebuilds the trained torch module and `predict(x)` gives class probabilities for new samples."""

    _nets: dict[str, Net] = field(default_factory=dict, init=False, compare=False)  # model() per weights file

    def model(self, weights: str = MODEL) -> torch.nn.Module:
        """The trained model: built from the resolved config for the run's input shape and heads, with
        `weights` loaded (model.pt: the last epoch; best.pt: the best validation epoch), in evaluation
        mode on the CPU. Its forward returns the heads' logits concatenated (`net.split_heads` splits them)."""
        if weights not in self._nets:
            self._nets[weights] = load_model(self, weights)
        return self._nets[weights]

    def predict(self, x: Any, *, normalize: bool = True, weights: str = MODEL) -> Any:
        """Class probabilities for the samples `x`: an (N, classes) array, or a list of them (one per head)
        for a data set with several heads; numpy in gives numpy out, a tensor gives a tensor.

        `x` is a batch in (N, C, H, W), (N, H, W, C), or (N, H, W) for one channel ((N, F) for vector
        data), at the run's input size, with values as the data set's files store them (0–255 pixels;
        0–16 for digits): the run's `data.normalize` is applied with the statistics of its training split
        (recorded in summary.json as `normalization`). `normalize=False` takes `x` as already normalized.
        """
        as_numpy = not isinstance(x, torch.Tensor)
        t = torch.as_tensor(np.asarray(x) if as_numpy else x).detach().cpu()
        t = to_model_layout(t, tuple(self.summary.get("input_shape") or ()), self.path)
        if normalize:
            stats = self.summary.get("normalization")
            if not isinstance(stats, dict):
                raise RunDirError(
                    f"{self.path}: {SUMMARY} does not record the normalization statistics (a run made before"
                    " regbench recorded them); pass normalize=False with x already normalized as its"
                    " data.normalize does"
                )
            t = apply_recorded(t, stats)
        net = self.model(weights)
        if len(t):
            probs = probabilities(net, t.float())
        else:
            probs = [torch.zeros(0, k) for k in net.heads]
        out = [p.numpy() for p in probs] if as_numpy else probs
        return out[0] if len(out) == 1 else out


def load_trained(path: str | Path) -> TrainedRun:
    """`rundir.load_run` with the trained model at hand (`model()`, `predict()`)."""
    run = load_run(path)
    return TrainedRun(run.path, run.config, run.metrics, run.summary)


def to_model_layout(x: torch.Tensor, shape: tuple[int, ...], where: Path | str = "") -> torch.Tensor:
    """A batch in (N, C, H, W), (N, H, W, C) or (N, H, W) (one channel) as (N, C, H, W) for a model
    whose input is `shape` = (C, H, W); vector inputs (F,) take (N, F). Raises RunDirError otherwise."""
    if len(shape) == 3:
        c, h, w = shape
        if x.dim() == 4 and tuple(x.shape[1:]) == (c, h, w):
            return x
        if x.dim() == 4 and tuple(x.shape[1:]) == (h, w, c):
            return x.permute(0, 3, 1, 2)
        if x.dim() == 3 and c == 1 and tuple(x.shape[1:]) == (h, w):
            return x.unsqueeze(1)
        expected = f"(N, {c}, {h}, {w}) or (N, {h}, {w}, {c})" + (f" or (N, {h}, {w})" if c == 1 else "")
    elif len(shape) == 1:
        if x.dim() == 2 and x.shape[1] == shape[0]:
            return x
        expected = f"(N, {shape[0]})"
    else:
        raise RunDirError(f"{where}: {SUMMARY} has no input_shape")
    raise RunDirError(f"{where}: predict needs a batch of shape {expected}, got {tuple(x.shape)}")
