"""The plain (one model) torch modules of the book's dropout, noise and batch_normal layers; their K-member
versions are in regbench.stacked.layers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..stacked.layers import keep_mask


class Dropout(nn.Module):
    """Book dropout: keep each value with probability keep_prob and scale by 1/keep_prob; identity in eval.
    `scale="eval"` is DLFS's: the mask alone in training, × keep_prob in evaluation (the same expectation).

    Draws come from `generator` (set by the trainer), so a run is reproducible and independent of other
    random draws in the process.
    """

    def __init__(self, keep_prob: float, scale: str = "train"):
        super().__init__()
        self.keep_prob, self.scale = keep_prob, scale
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.keep_prob >= 1.0:
            return x
        if not self.training:
            return x * self.keep_prob if self.scale == "eval" else x
        mask = keep_mask(x.shape, self.keep_prob, x.device, x.dtype, self.generator)
        return x * mask if self.scale == "eval" else x * mask * (1.0 / self.keep_prob)

    def extra_repr(self) -> str:
        return f"keep_prob={self.keep_prob}" + (", scale=eval" if self.scale == "eval" else "")


class Noise(nn.Module):
    """Book noise injection: adds normal (or uniform) noise to a training batch with probability `ratio`.

    Identity in evaluation; the gradient passes straight through (d(x + n)/dx = 1).
    """

    def __init__(self, kind: str, mean: float, std: float, low: float, high: float, ratio: float):
        super().__init__()
        self.kind, self.mean, self.std, self.low, self.high, self.ratio = kind, mean, std, low, high, ratio
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.ratio <= 0.0:
            return x
        g = self.generator
        if self.kind == "normal":
            noise = torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=g) * self.std + self.mean
        else:
            noise = torch.rand(x.shape, device=x.device, dtype=x.dtype, generator=g) * (self.high - self.low) + self.low
        if self.ratio < 1.0:  # book: np.random.rand() < ratio decides per batch; a 0/1 factor avoids a host sync
            noise = noise * (torch.rand((), device=x.device, generator=g) < self.ratio).to(x.dtype)
        return x + noise

    def extra_repr(self) -> str:
        spread = f"mean={self.mean}, std={self.std}" if self.kind == "normal" else f"low={self.low}, high={self.high}"
        return f"{self.kind}, {spread}, ratio={self.ratio}"


class BatchNormal(nn.Module):
    """Book batch_normal: per channel (images) or per feature (vectors) over the batch.

    Training uses the batch's mean and (biased) variance and moves the running averages by `exp_ratio`
    (book: mavg += exp_ratio * (avg - mavg)); evaluation uses the running averages. With `rescale`, a
    learnable scale (init 1) and shift (init 0) follow. Unlike the book, the gradient flows through the
    batch mean and variance too (the book's backprop treats them as constants).
    """

    def __init__(self, features: int, epsilon: float, exp_ratio: float, rescale: bool):
        super().__init__()
        self.epsilon, self.exp_ratio = epsilon, exp_ratio
        self.register_buffer("running_mean", torch.zeros(features))
        self.register_buffer("running_var", torch.ones(features))
        self.weight = nn.Parameter(torch.ones(features)) if rescale else None
        self.bias = nn.Parameter(torch.zeros(features)) if rescale else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return F.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.epsilon
            )
        # one fused pass gives the output and the batch statistics (mean, 1/sqrt(var + eps))
        out, mean, invstd = torch.native_batch_norm(x, self.weight, self.bias, None, None, True, 0.0, self.epsilon)
        with torch.no_grad():
            var = invstd.double().pow(-2).sub(self.epsilon).clamp_min(0).to(x.dtype)
            self.running_mean.lerp_(mean, self.exp_ratio)
            self.running_var.lerp_(var, self.exp_ratio)
        return out

    def extra_repr(self) -> str:
        return f"{self.running_mean.numel()}, epsilon={self.epsilon}, exp_ratio={self.exp_ratio}, rescale={self.weight is not None}"
