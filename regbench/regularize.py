"""The book's L2/L1 regularizers on weights and kernels (never biases or batch_normal parameters).

`decoupled` (the book's CnnRegModel.update_param): each step, w -= lr·(l2·w + l1·sign(w)) with the weights
before the optimizer's own update. `penalty` (Keras, "Deep Learning from Scratch"): l2/2·Σw² + l1·Σ|w| is
added to the loss, so it goes through the optimizer and appears in the reported cost.
"""

from __future__ import annotations

import torch

from .config import RegularizerConfig


class Regularizer:
    def __init__(self, cfg: RegularizerConfig, weights: list[torch.Tensor]):
        self.l2, self.l1, self.mode = cfg.l2_decay, cfg.l1_decay, cfg.mode
        self.weights = weights
        self.active = bool(weights) and (self.l2 > 0 or self.l1 > 0)

    def penalty(self) -> torch.Tensor | None:
        """The loss term in `penalty` mode (None otherwise)."""
        if not self.active or self.mode != "penalty":
            return None
        total = None
        if self.l2 > 0:
            total = 0.5 * self.l2 * sum((w * w).sum() for w in self.weights)
        if self.l1 > 0:
            l1 = self.l1 * sum(w.abs().sum() for w in self.weights)
            total = l1 if total is None else total + l1
        return total

    @torch.no_grad()
    def decay(self, lr: float) -> None:
        """The decoupled step, to call after backward and before optimizer.step()."""
        if not self.active or self.mode != "decoupled":
            return
        signs = torch._foreach_sign(self.weights) if self.l1 > 0 else None  # sign of the weights before decay
        if self.l2 > 0:
            torch._foreach_mul_(self.weights, 1.0 - lr * self.l2)
        if signs is not None:
            torch._foreach_add_(self.weights, signs, alpha=-lr * self.l1)
