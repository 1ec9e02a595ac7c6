"""Evaluation and prediction: losses, accuracies and probabilities of one model or of K stacked members."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..config import Config
from ..core import console as fmt
from ..core.errors import RunDirError
from ..data import DataInfo
from ..nn.model import Net, build_model
from ..rundir import MODEL, SUMMARY, Run
from ..stacked.layers import from_members
from .plan import Batches, Setup, derive_seed

EVAL_BATCH = 512  # evaluation batch: large for speed, small enough for 96×96 images on a laptop


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
