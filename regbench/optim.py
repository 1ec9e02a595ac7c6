"""Optimizers by name, with the book's defaults (Adam lr 0.001, β1 0.9, β2 0.999, ε 1e-8), and the
learning-rate schedule as a pure function of training progress (so resuming needs no scheduler state).

Fused kernels are used where torch has them (Adam, AdamW, SGD, Adagrad on CPU and CUDA): the same update
rule with fewer kernel launches; the others use torch's multi-tensor (foreach) path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import optim
from torch.optim import optimizer as torch_optimizer

from .config import OptimizerConfig
from .core.registry import Registry

Params = Iterable[torch.nn.Parameter]
OPTIMIZERS: Registry[Callable[[Params, OptimizerConfig, bool], optim.Optimizer]] = Registry("optimizer")


def fused_or_foreach(fused: bool) -> dict:
    return {"fused": True} if fused else {"foreach": True}


@OPTIMIZERS.register("sgd")
def sgd(params: Params, c: OptimizerConfig, fused: bool) -> optim.Optimizer:
    """Plain SGD: w -= lr·g."""
    return optim.SGD(params, lr=c.lr, weight_decay=c.weight_decay, **fused_or_foreach(fused))


@OPTIMIZERS.register("momentum")
def momentum(params: Params, c: OptimizerConfig, fused: bool) -> optim.Optimizer:
    """SGD with momentum: v = m·v + g; w -= lr·v (m = optimizer.momentum, 0.9)."""
    return optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay, **fused_or_foreach(fused))


@OPTIMIZERS.register("nesterov")
def nesterov(params: Params, c: OptimizerConfig, fused: bool) -> optim.Optimizer:
    """SGD with Nesterov momentum (the gradient is taken at the look-ahead point)."""
    kw = fused_or_foreach(fused)
    return optim.SGD(params, lr=c.lr, momentum=c.momentum, nesterov=True, weight_decay=c.weight_decay, **kw)


@OPTIMIZERS.register("adagrad")
def adagrad(params: Params, c: OptimizerConfig, fused: bool) -> optim.Optimizer:
    """AdaGrad: h += g²; w -= lr·g / (√h + ε)."""
    return optim.Adagrad(params, lr=c.lr, eps=c.eps or 1e-10, weight_decay=c.weight_decay, **fused_or_foreach(fused))


@OPTIMIZERS.register("rmsprop")
def rmsprop(params: Params, c: OptimizerConfig, fused: bool) -> optim.Optimizer:
    """RMSProp: h = α·h + (1-α)·g²; w -= lr·g / (√h + ε) (α = optimizer.alpha, 0.99)."""
    return optim.RMSprop(params, lr=c.lr, alpha=c.alpha, eps=c.eps or 1e-8, weight_decay=c.weight_decay, foreach=True)


@OPTIMIZERS.register("adadelta")
def adadelta(params: Params, c: OptimizerConfig, fused: bool) -> optim.Optimizer:
    """Adadelta (ρ = optimizer.rho); torch's form multiplies the update by lr (use lr 1.0 for the paper's)."""
    return optim.Adadelta(params, lr=c.lr, rho=c.rho, eps=c.eps or 1e-6, weight_decay=c.weight_decay, foreach=True)


@OPTIMIZERS.register("adam")
def adam(params: Params, c: OptimizerConfig, fused: bool) -> optim.Optimizer:
    """Adam exactly as the book's eval_adam_delta (bias-corrected moments, ε outside the square root)."""
    kw = fused_or_foreach(fused)
    return optim.Adam(params, lr=c.lr, betas=(c.beta1, c.beta2), eps=c.eps or 1e-8, weight_decay=c.weight_decay, **kw)


@OPTIMIZERS.register("adamw")
def adamw(params: Params, c: OptimizerConfig, fused: bool) -> optim.Optimizer:
    """Adam with decoupled weight decay (w -= lr·weight_decay·w each step, on every parameter)."""
    kw = fused_or_foreach(fused)
    return optim.AdamW(params, lr=c.lr, betas=(c.beta1, c.beta2), eps=c.eps or 1e-8, weight_decay=c.weight_decay, **kw)


@OPTIMIZERS.register("adamax")
def adamax(params: Params, c: OptimizerConfig, fused: bool) -> optim.Optimizer:
    """Adamax: Adam with the infinity norm in place of the second moment."""
    betas = (c.beta1, c.beta2)
    return optim.Adamax(params, lr=c.lr, betas=betas, eps=c.eps or 1e-8, weight_decay=c.weight_decay, foreach=True)


@OPTIMIZERS.register("nadam")
def nadam(params: Params, c: OptimizerConfig, fused: bool) -> optim.Optimizer:
    """NAdam: Adam with Nesterov momentum."""
    betas = (c.beta1, c.beta2)
    return optim.NAdam(params, lr=c.lr, betas=betas, eps=c.eps or 1e-8, weight_decay=c.weight_decay, foreach=True)


def make_optimizer(params: Params, cfg: OptimizerConfig, device: torch.device, fused: bool = True) -> optim.Optimizer:
    """The configured optimizer over `params`; `fused` asks for torch's fused kernels where they exist."""
    skip_dynamo(optim.Optimizer)
    opt = OPTIMIZERS[cfg.name](params, cfg, fused and device.type in ("cpu", "cuda"))
    plain_step(opt)
    return opt


# ----------------------------------------------------------------------------------------------- start-up
# torch.optim keeps torch.compile out of its optimizers: some methods are wrapped in torch._disable_dynamo and
# `step` in a wrapper that calls torch._dynamo.graph_break(). Both import torch._dynamo on first use, about as
# long as importing torch itself, for nothing when nothing is compiled; regbench never compiles its models.
_DISABLED_CODE = torch._disable_dynamo(lambda: None).__code__
_STEP_WRAPPER_CODE = getattr(torch_optimizer, "_use_grad_for_differentiable", lambda f: f)(lambda self: None).__code__


def skip_dynamo(cls: type) -> None:
    """Mark the `torch._disable_dynamo` methods of `cls` and its bases as already disabled: the wrapper looks
    for the disabled function on the original as `__dynamo_disable` and calls the original when it is
    itself (what the disabled function does when nothing compiles). A torch without that wrapper: no change."""
    for klass in cls.__mro__:
        for member in vars(klass).values():
            fn = getattr(member, "__wrapped__", None)
            if fn is not None and getattr(member, "__code__", None) is _DISABLED_CODE:
                if getattr(fn, "__dynamo_disable", None) is None:
                    fn.__dynamo_disable = fn


def plain_step(opt: optim.Optimizer) -> None:
    """Give `opt` a `step` that runs torch's update rule under no_grad, as torch's own wrapper does for a
    non-differentiable optimizer, without the wrapper's graph breaks (and so without importing torch._dynamo).
    Left as it is when the optimizer is differentiable or torch's step has another shape."""
    skip_dynamo(type(opt))
    wrapped = type(opt).step
    chain = [wrapped]
    while hasattr(chain[-1], "__wrapped__"):
        chain.append(chain[-1].__wrapped__)
    if opt.defaults.get("differentiable") or not any(getattr(f, "__code__", None) is _STEP_WRAPPER_CODE for f in chain):
        return
    raw = chain[-1]

    def step(closure=None):
        with torch.no_grad():
            return raw(opt) if closure is None else raw(opt, closure)

    opt.step = step  # type: ignore[method-assign]


def lr_at(cfg: OptimizerConfig, epoch: float, total_epochs: float) -> float:
    """Learning rate at training progress `epoch` (0 at the start, fractional within an epoch).

    Warm-up rises linearly from lr/100 to lr over `warmup` epochs; then `step` multiplies by gamma every
    `step_size` epochs, `exponential` by gamma every epoch, and `cosine` falls from lr to min_lr by the end.
    """
    if epoch < cfg.warmup:
        return cfg.lr * (0.01 + 0.99 * epoch / cfg.warmup)
    t = epoch - cfg.warmup
    if cfg.schedule == "step":
        return cfg.lr * (cfg.gamma or 0.1) ** math.floor(t / cfg.step_size + 1e-9)
    if cfg.schedule == "exponential":
        return cfg.lr * (cfg.gamma or 0.95) ** math.floor(t + 1e-9)
    if cfg.schedule == "cosine":
        span = max(total_epochs - cfg.warmup, 1e-9)
        return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1 + math.cos(math.pi * min(t / span, 1.0)))
    return cfg.lr
