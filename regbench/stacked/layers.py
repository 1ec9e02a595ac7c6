"""K same-shaped models trained side by side as one: the stacked versions of the layer types.

Layout: image activations are (B, K·C, H, W), member k owning channel block k, so a convolution is one
grouped convolution and pooling, batch_normal and activations act per member for free; vector
activations are (K, B, F), so a full layer is one batched matrix product. Every parameter and buffer has
a leading K dimension and the same name as in the single model, so member k's plain state_dict is
`{name: tensor[k]}` (see `member_state`). Dropout and noise draw each member's values from that member's
own generator, in the same order and shape as a single run, so a member trains exactly as it would alone
up to floating-point summation order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def to_members(x: torch.Tensor, k: int) -> torch.Tensor:
    """(B, K·C, H, W) → (K, B, C, H, W) view; (K, B, F) stays."""
    if x.dim() == 4:
        b, kc, h, w = x.shape
        return x.view(b, k, kc // k, h, w).transpose(0, 1)
    return x


def from_members(parts: torch.Tensor) -> torch.Tensor:
    """(K, B, C, H, W) → (B, K·C, H, W); (K, B, F) stays."""
    if parts.dim() == 5:
        k, b, c, h, w = parts.shape
        return parts.transpose(0, 1).reshape(b, k * c, h, w)
    return parts


class StackedLinear(nn.Module):
    """K fully connected layers: (K, B, F) @ (K, F, O) + (K, 1, O). `weight` is (K, O, F) like nn.Linear's."""

    def __init__(self, k: int, n_in: int, n_out: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(k, n_out, n_in))
        self.bias = nn.Parameter(torch.zeros(k, n_out)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.transpose(1, 2)
        if self.bias is None:
            return torch.bmm(x, w)
        return torch.baddbmm(self.bias.unsqueeze(1), x, w)


class StackedConv2d(nn.Module):
    """K convolutions as one grouped convolution. `weight` is (K, Cout, Cin, kh, kw)."""

    def __init__(self, k: int, c_in: int, c_out: int, kernel: tuple[int, int], stride, padding, bias: bool = True):
        super().__init__()
        self.k, self.stride, self.padding = k, stride, padding
        self.weight = nn.Parameter(torch.empty(k, c_out, c_in, *kernel))
        self.bias = nn.Parameter(torch.zeros(k, c_out)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.flatten(0, 1)  # (K·Cout, Cin, kh, kw): a view
        b = None if self.bias is None else self.bias.flatten()
        return F.conv2d(x, w, b, self.stride, self.padding, groups=self.k)


class StackedFlatten(nn.Module):
    """(B, K·C, H, W) → (K, B, C·H·W), each member flattened in the single model's (C, H, W) order."""

    def __init__(self, k: int):
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            return x
        b = x.shape[0]
        return x.reshape(b, self.k, -1).transpose(0, 1)


class StackedBatchNormal(nn.Module):
    """Book batch_normal per member: statistics per member and channel; buffers (K, C)."""

    def __init__(self, k: int, features: int, epsilon: float, exp_ratio: float, rescale: bool):
        super().__init__()
        self.k, self.epsilon, self.exp_ratio = k, epsilon, exp_ratio
        self.register_buffer("running_mean", torch.zeros(k, features))
        self.register_buffer("running_var", torch.ones(k, features))
        self.weight = nn.Parameter(torch.ones(k, features)) if rescale else None
        self.bias = nn.Parameter(torch.zeros(k, features)) if rescale else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.dim() == 3  # (K, B, F) → (B, K·F) so that channels are member-major as for images
        if flat:
            k, b, f = x.shape
            x = x.transpose(0, 1).reshape(b, k * f)
        w = None if self.weight is None else self.weight.flatten()
        bias = None if self.bias is None else self.bias.flatten()
        if self.training:
            out, mean, invstd = torch.native_batch_norm(x, w, bias, None, None, True, 0.0, self.epsilon)
            with torch.no_grad():
                var = invstd.double().pow(-2).sub(self.epsilon).clamp_min(0).to(x.dtype)
                self.running_mean.view(-1).lerp_(mean, self.exp_ratio)
                self.running_var.view(-1).lerp_(var, self.exp_ratio)
        else:
            rm, rv = self.running_mean.view(-1), self.running_var.view(-1)
            out = F.batch_norm(x, rm, rv, w, bias, False, 0.0, self.epsilon)
        if flat:
            out = out.view(b, k, f).transpose(0, 1)
        return out


def keep_mask(
    shape: torch.Size, keep_prob: float, device: torch.device, dtype: torch.dtype, generator: torch.Generator | None
) -> torch.Tensor:
    """Book dropout's mask: 1 with probability keep_prob, else 0, from uniform draws (`rand < keep_prob`).
    torch's CPU `bernoulli_` with a scalar p is 4× slower than `rand` (1.1 against 0.27 ms for a 10×6×48×48
    map; 1.8 ms per step for the flowers dropout CNN's three masks, two thirds of the plain CNN's step)."""
    return torch.rand(shape, device=device, generator=generator).lt_(keep_prob).to(dtype)


class StackedDropout(nn.Module):
    """Book dropout with a keep_prob per member; member k's mask comes from generator k. `scale="eval"`
    (DLFS): masks unscaled in training, member k × keep_prob k in evaluation."""

    def __init__(self, keep_probs: list[float], scale: str = "train"):
        super().__init__()
        self.keep_probs, self.scale = list(keep_probs), scale
        self.generators: list[torch.Generator | None] = [None] * len(keep_probs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if all(p >= 1.0 for p in self.keep_probs):
            return x
        k = len(self.keep_probs)
        parts = to_members(x, k)
        if not self.training:
            if self.scale != "eval":
                return x
            factors = torch.tensor(self.keep_probs, device=x.device, dtype=x.dtype)
            return from_members(parts * factors.view(k, *[1] * (parts.dim() - 1)))
        masks = []
        for p, g in zip(self.keep_probs, self.generators, strict=True):
            shape = parts.shape[1:]
            if p >= 1.0:
                masks.append(torch.ones(shape, device=x.device, dtype=x.dtype))
            elif self.scale == "eval":
                masks.append(keep_mask(shape, p, x.device, x.dtype, g))
            else:
                masks.append(keep_mask(shape, p, x.device, x.dtype, g) * (1.0 / p))
        return x * from_members(torch.stack(masks))


class StackedNoise(nn.Module):
    """Book noise injection with a std (normal) per member; member k's noise comes from generator k."""

    def __init__(self, kind: str, mean: float, stds: list[float], low: float, high: float, ratio: float):
        super().__init__()
        self.kind, self.mean, self.stds, self.low, self.high, self.ratio = kind, mean, list(stds), low, high, ratio
        self.generators: list[torch.Generator | None] = [None] * len(stds)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.ratio <= 0.0:
            return x
        parts = to_members(x, len(self.stds))
        noises = []
        for std, g in zip(self.stds, self.generators, strict=True):
            shape = parts.shape[1:]
            if self.kind == "normal":
                n = torch.randn(shape, device=x.device, dtype=x.dtype, generator=g) * std + self.mean
            else:
                n = torch.rand(shape, device=x.device, dtype=x.dtype, generator=g) * (self.high - self.low) + self.low
            if self.ratio < 1.0:
                n = n * (torch.rand((), device=x.device, generator=g) < self.ratio).to(x.dtype)
            noises.append(n)
        return x + from_members(torch.stack(noises))


class StackedParallel(nn.Module):
    """Branches on the same input, concatenated along each member's channels (or features)."""

    def __init__(self, k: int, branches: list[nn.Module]):
        super().__init__()
        self.k = k
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [b(x) for b in self.branches]
        if outs[0].dim() == 4:  # per member: (B, K, C_i, H, W) concatenated on C
            b, _, h, w = outs[0].shape
            return torch.cat([o.view(b, self.k, -1, h, w) for o in outs], dim=2).view(b, -1, h, w)
        return torch.cat(outs, dim=2)


def member_state(stacked: nn.Module, k: int) -> dict[str, torch.Tensor]:
    """Member k's plain state_dict: every parameter and buffer's slice k, under the single model's names."""
    return {name: t[k].detach().clone() for name, t in stacked.state_dict().items()}


def load_member_state(stacked: nn.Module, k: int, state: dict[str, torch.Tensor]) -> None:
    """Put a single model's state_dict into member k of a stacked model."""
    own = stacked.state_dict()
    with torch.no_grad():
        for name, t in state.items():
            own[name][k].copy_(t)
