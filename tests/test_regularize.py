"""L2/L1 in the book's decoupled form and in penalty form; weights and kernels only."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny

import regbench
from regbench.config import RegularizerConfig
from regbench.nn.model import build_model, init_weights, weights_and_kernels
from regbench.regularize import Regularizer
from regbench.resolve import load_config


def small_net():
    cfg = load_config({"model": {"layers": [["conv", {"ksize": 3, "chn": 2}], ["batch_normal"], 4]}}).model
    net, _ = build_model(cfg, (1, 4, 4), [3])
    init_weights(net, cfg.init, 0)
    return net


def test_decoupled_step_is_the_books_update_rule():
    """Book update_param: w -= lr·(delta + l2·w + l1·sign(w)), with delta from the optimizer (SGD: the gradient)."""
    net = small_net()
    lr, l2, l1 = 0.1, 0.3, 0.02
    reg = Regularizer(RegularizerConfig(l2_decay=l2, l1_decay=l1), weights_and_kernels(net))
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    net(torch.randn(5, 1, 4, 4)).sum().backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters()}
    reg.decay(lr)
    opt.step()
    for n, p in net.named_parameters():
        w, g = before[n], grads[n]
        if n.endswith("weight") and p.dim() > 1:  # weights and kernels
            expect = w - lr * (g + l2 * w + l1 * torch.sign(w))
        else:  # biases and batch_normal scale/shift: no decay
            expect = w - lr * g
        assert torch.allclose(p.detach(), expect, atol=1e-6), n


def test_penalty_mode_adds_half_l2_and_l1_to_the_loss():
    net = small_net()
    ws = weights_and_kernels(net)
    reg = Regularizer(RegularizerConfig(l2_decay=0.2, l1_decay=0.05, mode="penalty"), ws)
    expect = 0.1 * sum((w**2).sum() for w in ws) + 0.05 * sum(w.abs().sum() for w in ws)
    assert reg.penalty().item() == pytest.approx(expect.item(), rel=1e-6)
    reg.decay(0.1)  # a no-op in penalty mode
    assert Regularizer(RegularizerConfig(l2_decay=0.2), ws).penalty() is None


def test_penalty_mode_reports_the_cost_with_the_penalty(runs):
    plain = regbench.train(tiny(train__epochs=1), runs, quiet=True)
    pen = regbench.train(
        tiny(train__epochs=1, regularizer__l2_decay=1.0, regularizer__mode="penalty"), runs, quiet=True
    )
    assert pen.metrics[0]["train_loss"] > plain.metrics[0]["train_loss"] + 0.01


def test_l1_drives_weights_to_zero_and_l2_shrinks_them(runs):
    """The book's chapter 8 finding on a digits MLP: L1 makes many weights ~0 (|w| ≤ 1e-5), L2 lowers their spread."""
    base = {"model": {"layers": [30, 10]}, "train": {"epochs": 10, "show": 0}}

    def stats(**reg):
        cfg = load_config({**base, "regularizer": reg})
        return regbench.train(cfg, runs, quiet=True).summary["params"]

    plain, l2, l1 = stats(), stats(l2_decay=0.1), stats(l1_decay=0.01)
    assert plain["near_zero"] == 0 and l2["near_zero"] == 0
    assert l1["near_zero_pct"] > 5.0  # weights of always-blank pixels settle in the ±1e-5 band
    assert l2["std"] < 0.97 * plain["std"]
