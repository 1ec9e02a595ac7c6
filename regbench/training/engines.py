"""The model/optimizer pair the training loop drives: one model (`Solo`) or K models side by side (`Stacked`).

This is the only difference between a run alone and runs side by side: `fit.fit` runs the same loop over
either. Both speak in members: a Solo is one member, a Stacked model K, and every per-member result is a
(K, …) tensor or a list of K values. A step does its work on the device and returns device tensors only.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ..config import Config
from ..data.augment import make_augment
from ..nn.model import Net, build_model, init_weights, param_stats, relu_after_max, weights_and_kernels
from ..optim import lr_at, make_optimizer
from ..regularize import Regularizer
from ..stacked.layers import load_member_state, member_state
from ..stacked.optim import StackedOptimizer, StackedRegularizer
from .infer import (
    evaluate,
    evaluate_members,
    head_loss,
    head_predictions,
    member_losses,
    member_predictions,
    member_probabilities,
    probabilities,
    stack_input,
)
from .plan import Batches, Setup, derive_seed, make_gens, match_layouts, rng_states, set_rng_states

Tensors = dict[str, torch.Tensor]


def clone(state: Tensors) -> Tensors:
    return {k: v.detach().clone() for k, v in state.items()}


class Engine:
    """What the loop needs of a model/optimizer pair (shared set-up; `Solo` and `Stacked` fill in the rest)."""

    k: int
    net: Net
    gens: list[dict[str, torch.Generator]]

    def __init__(self, cfgs: list[Config], setup: Setup):
        cfg = cfgs[0]
        self.cfgs, self.device, self.info = cfgs, setup.device, setup.info
        self.amp = cfg.train.amp == "bf16"
        self.clip = cfg.train.clip_grad_norm
        oc = cfg.optimizer
        self.scheduled = oc.schedule != "none" or oc.warmup > 0
        torch.manual_seed(derive_seed(cfg.seed, "global"))  # anything outside our own generators
        self.augment = make_augment(cfg.data.augment, setup.info.input_shape)  # None without data.augment
        self.gens = [make_gens(c.seed, setup.device) for c in cfgs]

    def lr(self, m: int, t: float, total_epochs: float) -> float:
        """Member m's learning rate at `t` epochs (what the metrics row records)."""
        oc = self.cfgs[m].optimizer
        return lr_at(oc, t, total_epochs) if self.scheduled else oc.lr

    def rng(self, m: int) -> dict[str, Any]:
        return rng_states(self.gens[m])


class Solo(Engine):
    """One model and its torch optimizer: the plain PyTorch step."""

    k = 1

    def __init__(self, cfg: Config, setup: Setup):
        super().__init__([cfg], setup)
        net, _ = build_model(cfg.model, setup.info.input_shape, setup.info.head_sizes)
        init_weights(net, cfg.model.init, derive_seed(cfg.seed, "init"))
        if cfg.train.relu_after_max:
            relu_after_max(net)
        net.to(setup.device, memory_format=torch.channels_last) if setup.channels_last else net.to(setup.device)
        net.set_generator(self.gens[0]["layers"])
        self.net = net
        self.params = [p for p in net.parameters() if p.requires_grad]
        self.opt = make_optimizer(self.params, cfg.optimizer, setup.device, fused=cfg.train.fused)
        self.weights = weights_and_kernels(net)
        self.reg = Regularizer(cfg.regularizer, self.weights)
        self.first_weight = self.weights[0]  # its gradient shows vanishing gradients in deep sigmoid nets

    def restore(self, ckpt: dict[str, Any]) -> None:
        """Continue from a checkpoint (`resume`): weights, optimizer state and random streams as they were."""
        self.net.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])
        match_layouts(self.opt)
        set_rng_states(ckpt["rng"], self.gens[0])

    def set_lr(self, t: float, total_epochs: float) -> None:
        oc = self.cfgs[0].optimizer
        for group in self.opt.param_groups:
            group["lr"] = lr_at(oc, t, total_epochs)

    def permutations(self, n: int) -> torch.Tensor:
        return torch.randperm(n, generator=self.gens[0]["order"], device=self.device)

    def batch(self, data: Batches, perm: torch.Tensor, i: int, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = perm[i:j]
        x, y = data.rows(idx), data.y.index_select(0, idx)
        if self.augment is not None:  # data.augment: random per-sample transforms, on the device
            x = self.augment(x, self.gens[0]["augment"])
        return x, y

    def step(self, x: torch.Tensor, y: torch.Tensor, sample_norm: bool):
        """One optimizer step; returns the loss, the predicted classes and (when sampled) the gradient norms."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            logits = self.net(x)
            loss = head_loss(self.net, logits, y)
        penalty = self.reg.penalty()
        if penalty is not None:
            loss = loss + penalty
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        norms = None
        if sample_norm:
            grads = [p.grad for p in self.params if p.grad is not None]
            norms = torch.stack([torch.nn.utils.get_total_norm(grads, foreach=True), self.first_weight.grad.norm()])
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip, foreach=True)
        self.reg.decay(self.opt.param_groups[0]["lr"])
        self.opt.step()
        return loss.detach(), head_predictions(self.net, logits), norms

    def epoch_results(self, losses: list, preds: list, data: Batches, perm: torch.Tensor):
        """(K, steps) losses and (K, heads) correct counts of an epoch's steps."""
        seen = torch.cat(preds)
        correct = (seen == data.y.index_select(0, perm[: len(seen)])).sum(0)
        return torch.stack(losses).view(1, -1), correct.view(1, -1)

    def evaluate(self, data: Batches) -> tuple[list[float | None], list[list[float] | None]]:
        loss, accs = evaluate(self.net, data)
        return [loss], [accs]

    def probabilities(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        return [probabilities(self.net, x)]

    def state(self, m: int) -> Tensors:
        return clone(self.net.state_dict())

    def load_state(self, m: int, state: Tensors) -> None:
        self.net.load_state_dict(state)

    def checkpoint_state(self, m: int) -> tuple[Tensors, dict[str, Any]]:
        return self.net.state_dict(), self.opt.state_dict()

    def freeze(self, m: int) -> None:
        """Nothing to do: the loop ends once its only member stops."""

    def param_stats(self, m: int) -> dict[str, float | int]:
        return param_stats(self.net)

    def member_weights(self, m: int) -> list[torch.Tensor]:
        return self.weights


class Stacked(Engine):
    """K models as one stacked model (grouped convolutions, batched products) and a stacked optimizer. Each
    member keeps its own initial values, batch order, dropout/noise draws, optimizer state and hyperparameters;
    a frozen member (diverged, stopped early, pruned) no longer counts in the loss nor moves."""

    def __init__(self, cfgs: list[Config], setup: Setup):
        super().__init__(cfgs, setup)
        cfg, self.k = cfgs[0], len(cfgs)
        net, _ = build_model(cfg.model, setup.info.input_shape, setup.info.head_sizes, members=[c.model for c in cfgs])
        init_weights(net, cfg.model.init, [derive_seed(c.seed, "init") for c in cfgs])
        if cfg.train.relu_after_max:
            relu_after_max(net)
        net.to(setup.device)
        net.set_generators([g["layers"] for g in self.gens])
        self.net = net
        self.params = [p for p in net.parameters() if p.requires_grad]
        self.opt = StackedOptimizer(self.params, [c.optimizer for c in cfgs])
        self.weights = weights_and_kernels(net)
        self.reg = StackedRegularizer([c.regularizer for c in cfgs], self.weights)
        self.weight_pos = [next(i for i, p in enumerate(self.params) if p is w) for w in self.weights]
        self.first_weight = self.weights[0]
        self.live = torch.ones(self.k, device=setup.device)  # a frozen member's loss counts 0
        self.unit = dataclasses.replace(cfg.optimizer, lr=1.0, min_lr=0.0)  # lr_at is affine in lr: lr·α + β
        # a torch optimizer's state_dict layout per member (what a run alone would save), made before training:
        # the first torch optimizer built in a process costs seconds (imports), which must not count as checkpoint time
        dummies = [torch.zeros(p.shape[1:], device=setup.device, requires_grad=True) for p in self.params]
        self.templates = [make_optimizer(dummies, c.optimizer, setup.device).state_dict() for c in cfgs]

    def set_lr(self, t: float, total_epochs: float) -> None:
        oc = self.cfgs[0].optimizer
        alpha = lr_at(self.unit, t, total_epochs)
        self.opt.schedule(alpha, lr_at(oc, t, total_epochs) - oc.lr * alpha)

    def permutations(self, n: int) -> torch.Tensor:
        return torch.stack([torch.randperm(n, generator=g["order"], device=self.device) for g in self.gens])

    def batch(self, data: Batches, perms: torch.Tensor, i: int, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        k = self.k
        idx = perms[:, i:j].reshape(-1)
        x, y = data.rows(idx), data.y.index_select(0, idx).view(k, -1, data.y.shape[1])
        if self.augment is not None:
            parts = x.view(k, -1, *x.shape[1:])
            x = torch.cat([self.augment(part, g["augment"]) for part, g in zip(parts, self.gens, strict=True)])
        return stack_input(x, k), y

    def step(self, x: torch.Tensor, y: torch.Tensor, sample_norm: bool):
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            logits = self.net(x)
            loss = member_losses(self.net, logits, y)
        penalty = self.reg.penalty()
        if penalty is not None:
            loss = loss + penalty
        self.opt.zero_grad()
        (loss * self.live).sum().backward()
        norms = None
        if sample_norm:  # per member: global gradient norm and the first weight layer's, (K, 2)
            sq = sum(p.grad.flatten(1).pow(2).sum(1) for p in self.params if p.grad is not None)
            norms = torch.stack([sq.sqrt(), self.first_weight.grad.flatten(1).norm(dim=1)], dim=1)
        if self.clip:  # clip_grad_norm_ per member: each member's gradients scaled to at most `clip` together
            sq = sum(p.grad.flatten(1).pow(2).sum(1) for p in self.params if p.grad is not None)
            coef = (self.clip / (sq.sqrt() + 1e-6)).clamp(max=1.0)
            for p in self.params:
                if p.grad is not None:
                    p.grad.mul_(coef.view(-1, *[1] * (p.dim() - 1)))
        self.reg.decay([self.opt.lr[i] for i in self.weight_pos])
        self.opt.step()
        return loss.detach(), member_predictions(self.net, logits), norms

    def epoch_results(self, losses: list, preds: list, data: Batches, perms: torch.Tensor):
        n = len(preds) * preds[0].shape[1]
        seen_y = data.y.index_select(0, perms[:, :n].reshape(-1)).view(self.k, n, -1)
        correct = (torch.cat(preds, dim=1)[:, : seen_y.shape[1]] == seen_y).sum(1)  # (K, heads)
        return torch.stack(losses, dim=1), correct

    def evaluate(self, data: Batches) -> tuple[list[float | None], list[list[float] | None]]:
        return evaluate_members(self.net, data, self.k)

    def probabilities(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        return member_probabilities(self.net, x, self.k)

    def state(self, m: int) -> Tensors:
        return member_state(self.net, m)

    def load_state(self, m: int, state: Tensors) -> None:
        load_member_state(self.net, m, state)

    def checkpoint_state(self, m: int) -> tuple[Tensors, dict[str, Any]]:
        """Member m's weights and a torch optimizer's state_dict for them (what a run alone would save)."""
        return member_state(self.net, m), self.opt.member_state_dict(m, self.templates[m])

    def freeze(self, m: int) -> None:
        self.live[m] = 0.0
        self.opt.freeze(m)

    def param_stats(self, m: int) -> dict[str, float | int]:
        return param_stats(self.net, m)

    def member_weights(self, m: int) -> list[torch.Tensor]:
        return [w[m] for w in self.weights]


def make_engine(cfgs: list[Config], setup: Setup) -> Solo | Stacked:
    return Solo(cfgs[0], setup) if len(cfgs) == 1 else Stacked(cfgs, setup)
