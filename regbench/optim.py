"""Optimizers by name, with the book's defaults (Adam lr 0.001, β1 0.9, β2 0.999, ε 1e-8).

Each entry turns the config and a parameter list into a torch optimizer. Fused kernels are used where
torch has them for the device (CPU and CUDA for Adam, SGD, Adagrad): same update rule, fewer kernel launches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from .config import OptimizerConfig
from .registry import Registry

Params = Iterable[torch.nn.Parameter]
OPTIMIZERS: Registry[Callable[[Params, OptimizerConfig, bool], torch.optim.Optimizer]] = Registry("optimizer")


@OPTIMIZERS.register("sgd")
def sgd(params: Params, c: OptimizerConfig, fused: bool) -> torch.optim.Optimizer:
    """Plain SGD: w -= lr·g."""
    return torch.optim.SGD(params, lr=c.lr, fused=fused or None)


@OPTIMIZERS.register("momentum")
def momentum(params: Params, c: OptimizerConfig, fused: bool) -> torch.optim.Optimizer:
    """SGD with momentum (v = m·v + g; w -= lr·v), m = optimizer.momentum (0.9)."""
    return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, fused=fused or None)


@OPTIMIZERS.register("adagrad")
def adagrad(params: Params, c: OptimizerConfig, fused: bool) -> torch.optim.Optimizer:
    """AdaGrad: h += g²; w -= lr·g / (√h + ε)."""
    return torch.optim.Adagrad(params, lr=c.lr, eps=c.eps or 1e-10, fused=fused or None)


@OPTIMIZERS.register("rmsprop")
def rmsprop(params: Params, c: OptimizerConfig, fused: bool) -> torch.optim.Optimizer:
    """RMSProp: h = α·h + (1-α)·g²; w -= lr·g / (√h + ε), α = optimizer.alpha (0.99)."""
    return torch.optim.RMSprop(params, lr=c.lr, alpha=c.alpha, eps=c.eps or 1e-8, foreach=True)


@OPTIMIZERS.register("adam")
def adam(params: Params, c: OptimizerConfig, fused: bool) -> torch.optim.Optimizer:
    """Adam exactly as the book's eval_adam_delta (bias-corrected moments, ε outside the square root)."""
    return torch.optim.Adam(params, lr=c.lr, betas=(c.beta1, c.beta2), eps=c.eps or 1e-8, fused=fused or None)


def make_optimizer(
    params: Params, cfg: OptimizerConfig, device: torch.device, fused: bool = True
) -> torch.optim.Optimizer:
    """The configured optimizer over `params`; `fused` asks for torch's fused kernels where they exist."""
    return OPTIMIZERS[cfg.name](params, cfg, fused and device.type in ("cpu", "cuda"))
