"""Optimizers and regularizers for stacked parameters (leading member dimension K), each member with its
own learning rate, weight decay and L2/L1 strengths.

torch.optim cannot give each slice of one tensor its own learning rate, so the update rules of every
optimizer in `regbench.optim` are written here with the hyperparameters as (K, 1, …) tensors. They follow
torch.optim's own formulas step for step (tests compare them member by member), and the state is kept
under torch's names so a member's state converts to a torch optimizer's state_dict (`member_state_dict`).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..config import OptimizerConfig, RegularizerConfig

STATE_KEYS = {  # torch.optim's state names per optimizer (besides "step")
    "sgd": [],
    "momentum": ["momentum_buffer"],
    "nesterov": ["momentum_buffer"],
    "adagrad": ["sum"],
    "rmsprop": ["square_avg"],
    "adadelta": ["square_avg", "acc_delta"],
    "adam": ["exp_avg", "exp_avg_sq"],
    "adamw": ["exp_avg", "exp_avg_sq"],
    "adamax": ["exp_avg", "exp_inf"],
    "nadam": ["exp_avg", "exp_avg_sq"],
}
DEFAULT_EPS = {"adagrad": 1e-10, "adadelta": 1e-6}
NADAM_MOMENTUM_DECAY = 4e-3  # torch.optim.NAdam's default


def per_member(values: list[float], p: torch.Tensor) -> torch.Tensor:
    """(K,) values as a (K, 1, …) tensor that broadcasts against the stacked parameter `p`."""
    return torch.tensor(values, dtype=p.dtype, device=p.device).view(-1, *[1] * (p.dim() - 1))


class StackedOptimizer:
    """One optimizer over stacked parameters; `cfgs[k]` is member k's optimizer config (same name and
    shared settings, its own lr and weight_decay)."""

    def __init__(self, params: list[torch.Tensor], cfgs: list[OptimizerConfig]):
        c = cfgs[0]
        self.params, self.name, self.cfg = params, c.name, c
        self.eps = c.eps or DEFAULT_EPS.get(c.name, 1e-8)
        self.lrs = [m.lr for m in cfgs]
        self.base = [per_member(self.lrs, p) for p in params]  # (K, 1, …) learning rates per parameter
        self.lr = list(self.base)  # the rates of the current step
        self.wd = [per_member([m.weight_decay for m in cfgs], p) for p in params]
        self.use_wd = any(m.weight_decay > 0 for m in cfgs)
        self.active = [per_member([1.0] * len(cfgs), p) > 0 for p in params]  # False for frozen members
        self.frozen = False
        self.steps = 0
        self.mu_product = 1.0  # nadam
        self.state: list[dict[str, torch.Tensor]] = [{} for _ in params]

    def schedule(self, alpha: float, beta: float) -> None:
        """Learning rates base·alpha + beta (a schedule is affine in the base rate); device-side, no sync."""
        self.lr = [b * alpha + beta for b in self.base]
        if self.frozen:
            self.lr = [torch.where(a, lr, 0.0) for a, lr in zip(self.active, self.lr, strict=True)]

    def freeze(self, k: int) -> None:
        """Stop updating member k (diverged or early-stopped); its state is zeroed so that nothing it holds
        (NaN included) can reach its parameters again. The other members are unaffected."""
        self.frozen = True
        for a, st in zip(self.active, self.state, strict=True):
            a[k] = False
            for buf in st.values():
                buf[k] = 0.0
        self.lr = [torch.where(a, lr, 0.0) for a, lr in zip(self.active, self.lr, strict=True)]

    def zero_grad(self, set_to_none: bool = True) -> None:
        """As torch.optim.Optimizer.zero_grad: drop the gradients, or zero them in place (`set_to_none=False`)."""
        for p in self.params:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                if p.grad.grad_fn is not None:
                    p.grad.detach_()
                else:
                    p.grad.requires_grad_(False)
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        t, c, eps = self.steps, self.cfg, self.eps
        if self.name == "nadam":
            mu = c.beta1 * (1.0 - 0.5 * 0.96 ** (t * NADAM_MOMENTUM_DECAY))
            mu_next = c.beta1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * NADAM_MOMENTUM_DECAY))
            self.mu_product *= mu
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            g, lr, st = p.grad, self.lr[i], self.state[i]
            if self.frozen:
                g = torch.where(self.active[i], g, 0.0)
            if self.use_wd and self.name != "adamw":  # torch: weight decay added to the gradient
                g = g + self.wd[i] * p
            if self.name in ("sgd", "momentum", "nesterov"):
                if self.name != "sgd":
                    buf = st.get("momentum_buffer")
                    buf = st["momentum_buffer"] = g.clone() if buf is None else buf.mul_(c.momentum).add_(g)
                    g = g + c.momentum * buf if self.name == "nesterov" else buf
                upd = lr * g
            elif self.name == "adagrad":
                s = st.setdefault("sum", torch.zeros_like(p))
                s.addcmul_(g, g)
                upd = lr * g / s.sqrt().add_(eps)
            elif self.name == "rmsprop":
                sq = st.setdefault("square_avg", torch.zeros_like(p))
                sq.mul_(c.alpha).addcmul_(g, g, value=1 - c.alpha)
                upd = lr * g / sq.sqrt().add_(eps)
            elif self.name == "adadelta":
                sq = st.setdefault("square_avg", torch.zeros_like(p))
                acc = st.setdefault("acc_delta", torch.zeros_like(p))
                sq.mul_(c.rho).addcmul_(g, g, value=1 - c.rho)
                delta = acc.add(eps).sqrt_().div_(sq.add(eps).sqrt_()).mul_(g)
                acc.mul_(c.rho).addcmul_(delta, delta, value=1 - c.rho)
                upd = lr * delta
            elif self.name in ("adam", "adamw"):
                m = st.setdefault("exp_avg", torch.zeros_like(p)).lerp_(g, 1 - c.beta1)
                v = st.setdefault("exp_avg_sq", torch.zeros_like(p))
                v.mul_(c.beta2).addcmul_(g, g, value=1 - c.beta2)
                denom = (v.sqrt() / math.sqrt(1 - c.beta2**t)).add_(eps)
                upd = lr / (1 - c.beta1**t) * m / denom
                if self.name == "adamw" and self.use_wd:  # decoupled: on the weights before this step
                    upd = upd + lr * self.wd[i] * p
            elif self.name == "adamax":
                m = st.setdefault("exp_avg", torch.zeros_like(p)).lerp_(g, 1 - c.beta1)
                u = st.setdefault("exp_inf", torch.zeros_like(p))
                torch.maximum(u.mul_(c.beta2), g.abs().add_(eps), out=u)
                upd = lr / (1 - c.beta1**t) * m / u
            elif self.name == "nadam":
                m = st.setdefault("exp_avg", torch.zeros_like(p)).lerp_(g, 1 - c.beta1)
                v = st.setdefault("exp_avg_sq", torch.zeros_like(p))
                v.mul_(c.beta2).addcmul_(g, g, value=1 - c.beta2)
                denom = v.div(1 - c.beta2**t).sqrt().add_(eps)
                upd = lr * (1 - mu) / (1 - self.mu_product) * g / denom
                upd = upd + lr * mu_next / (1 - self.mu_product * mu_next) * m / denom
            else:  # config validation keeps this unreachable
                raise ValueError(f"no stacked update rule for {self.name}")
            p.sub_(torch.where(self.active[i], upd, 0.0) if self.frozen else upd)

    def member_state_dict(self, k: int, template: dict[str, Any]) -> dict[str, Any]:
        """Member k's state in torch.optim's state_dict format; `template` is a fresh torch optimizer's
        state_dict for that member's parameters (it supplies param_groups)."""
        state: dict[int, dict[str, Any]] = {}
        for i, st in enumerate(self.state):
            if not st:
                continue
            entry = {key: st[key][k].detach().clone() for key in STATE_KEYS[self.name] if key in st}
            if self.name not in ("sgd", "momentum", "nesterov"):
                entry["step"] = torch.tensor(float(self.steps))
            if self.name == "nadam":
                entry["mu_product"] = torch.tensor(self.mu_product)
            state[i] = entry
        return {"state": state, "param_groups": template["param_groups"]}

    def load_member_state_dict(self, k: int, sd: dict[str, Any]) -> None:
        """Put a torch.optim state_dict (of a single model's optimizer) into member k."""
        for i, entry in sd["state"].items():
            p = self.params[int(i)]
            for key in STATE_KEYS[self.name]:
                if key in entry and entry[key] is not None:
                    self.state[int(i)].setdefault(key, torch.zeros_like(p))[k].copy_(entry[key])
            if "step" in entry:
                self.steps = int(float(entry["step"]))
            if "mu_product" in entry:
                self.mu_product = float(entry["mu_product"])


class StackedRegularizer:
    """The book's L2/L1 (regbench.regularize) with per-member strengths on stacked weights and kernels."""

    def __init__(self, cfgs: list[RegularizerConfig], weights: list[torch.Tensor]):
        self.mode = cfgs[0].mode
        self.weights = weights
        self.l2 = [per_member([c.l2_decay for c in cfgs], w) for w in weights]
        self.l1 = [per_member([c.l1_decay for c in cfgs], w) for w in weights]
        self.l2_k = torch.tensor([c.l2_decay for c in cfgs], device=weights[0].device) if weights else None
        self.l1_k = torch.tensor([c.l1_decay for c in cfgs], device=weights[0].device) if weights else None
        self.use_l2 = any(c.l2_decay > 0 for c in cfgs)
        self.use_l1 = any(c.l1_decay > 0 for c in cfgs)
        self.active = bool(weights) and (self.use_l2 or self.use_l1)

    def penalty(self) -> torch.Tensor | None:
        """Per-member loss terms (K,) in `penalty` mode: l2/2·Σw² + l1·Σ|w|; None otherwise."""
        if not self.active or self.mode != "penalty":
            return None
        flat = [w.flatten(1) for w in self.weights]
        total = 0
        if self.use_l2:  # one fused reduction per weight, then the (K,) strengths
            total = total + 0.5 * self.l2_k * sum(torch.linalg.vector_norm(f, 2, dim=1).square() for f in flat)
        if self.use_l1:
            total = total + self.l1_k * sum(torch.linalg.vector_norm(f, 1, dim=1) for f in flat)
        return total

    @torch.no_grad()
    def decay(self, lrs: list[torch.Tensor]) -> None:
        """The decoupled step w -= lr·(l2·w + l1·sign(w)), with each member's lr (`lrs[i]` per weight)."""
        if not self.active or self.mode != "decoupled":
            return
        for w, l2, l1, lr in zip(self.weights, self.l2, self.l1, lrs, strict=True):
            step = l2 * w if self.use_l2 else 0
            if self.use_l1:
                step = step + l1 * torch.sign(w)
            w.sub_(lr * step)
