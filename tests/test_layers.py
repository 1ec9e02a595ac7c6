"""Each layer type's book semantics: shapes, defaults, training vs evaluation behaviour."""

from __future__ import annotations

import pytest
import torch

from regbench.config import InitConfig, ModelConfig
from regbench.nn.model import build_model, init_weights, param_stats, weights_and_kernels
from regbench.nn.modules import BatchNormal, Dropout, Noise
from regbench.nn.registry import LAYERS
from regbench.nn.spec import parse_layers
from regbench.resolve import load_config


def build(layers, shape=(3, 8, 8), heads=(5,), **model):
    cfg = load_config({"model": {"layers": layers, **model}}).model
    net, rows = build_model(cfg, shape, list(heads))
    return net, rows


def test_registry_matches_the_documented_notation():
    assert LAYERS.names() == [
        "full",
        "conv",
        "max",
        "avg",
        "dropout",
        "noise",
        "batch_normal",
        "activation",
        "flatten",
        "serial",
        "residual",
        "parallel",
    ]


def test_bare_int_is_a_full_layer_and_flatten_is_implicit():
    net, rows = build([30, 10], shape=(3, 96, 96))
    assert [r.shape for r in rows] == [(3, 96, 96), (30,), (10,), (5,)]
    assert sum(r.weights for r in rows) == 829_790  # the book's count for flowers_model_1
    assert net(torch.zeros(2, 3, 96, 96)).shape == (2, 5)


def test_output_layer_has_one_unit_per_class_of_every_head():
    net, rows = build([8], heads=(3, 31))
    assert rows[-1].shape == (34,)
    a, b = net.split_heads(net(torch.zeros(4, 3, 8, 8)))
    assert a.shape == (4, 3) and b.shape == (4, 31)


@pytest.mark.parametrize(
    "conv, out",
    [
        ({"ksize": 3, "chn": 6}, (6, 8, 8)),  # 'same' padding keeps H×W
        ({"ksize": [2, 4], "chn": 2}, (2, 8, 8)),  # even kernels pad more at the bottom/right
        ({"ksize": 3, "chn": 4, "stride": 2}, (4, 4, 4)),  # ceil(8 / 2)
        ({"ksize": 5, "chn": 4, "stride": 3}, (4, 3, 3)),  # ceil(8 / 3)
    ],
)
def test_conv_same_padding(conv, out):
    net, rows = build([["conv", conv]])
    assert rows[1].shape == out
    assert net.body(torch.zeros(1, 3, 8, 8)).shape[1:] == out


def test_conv_kernel_count_is_kh_kw_in_out():
    _, rows = build([["conv", {"ksize": 3, "chn": 6}]])
    assert (rows[1].weights, rows[1].other) == (3 * 3 * 3 * 6, 6)


def test_pool_window_equals_stride():
    net, rows = build([["max", {"stride": 2}], ["avg", {"stride": [2, 4]}]])
    assert rows[1].shape == (3, 4, 4) and rows[2].shape == (3, 2, 1)
    x = torch.arange(64.0).reshape(1, 1, 8, 8).repeat(1, 3, 1, 1)
    y = net.body[0](x)
    assert y[0, 0, 0, 0] == 9.0  # max of the 2×2 window [[0,1],[8,9]]
    assert net.body[1](y)[0, 0, 0, 0] == pytest.approx((9 + 11 + 13 + 15 + 25 + 27 + 29 + 31) / 8)


def test_dropout_keeps_with_probability_and_rescales():
    d = Dropout(0.6)
    d.generator = torch.Generator().manual_seed(0)
    x = torch.ones(200_000)
    y = d.train()(x)
    kept = (y != 0).float().mean().item()
    assert kept == pytest.approx(0.6, abs=0.01)
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / 0.6))
    assert torch.equal(d.eval()(x), x)
    assert torch.equal(Dropout(1.0).train()(x), x)


def test_dropout_gradient_uses_the_same_mask():
    d = Dropout(0.5).train()
    x = torch.ones(1000, requires_grad=True)
    y = d(x)
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # d(x·m/p)/dx = m/p


def test_noise_is_training_only_and_passes_the_gradient():
    n = Noise("normal", 0.5, 0.1, -1, 1, 1.0).train()
    x = torch.zeros(100_000, requires_grad=True)
    y = n(x)
    assert y.mean().item() == pytest.approx(0.5, abs=0.01) and y.std().item() == pytest.approx(0.1, abs=0.005)
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
    assert torch.equal(n.eval()(x), x)


def test_uniform_noise_and_ratio_per_batch():
    u = Noise("uniform", 0, 1, -0.2, 0.3, 1.0).train()
    y = u(torch.zeros(50_000))
    assert y.min() >= -0.2 and y.max() <= 0.3 and y.mean().item() == pytest.approx(0.05, abs=0.01)
    half = Noise("normal", 0, 1, -1, 1, 0.5).train()
    half.generator = torch.Generator().manual_seed(1)
    noisy = [bool((half(torch.zeros(100)) != 0).any()) for _ in range(400)]
    assert 0.4 < sum(noisy) / 400 < 0.6  # the whole batch gets noise, or none of it
    assert torch.equal(Noise("normal", 0, 1, -1, 1, 0.0).train()(torch.zeros(10)), torch.zeros(10))


def test_batch_normal_training_statistics_and_running_averages():
    bn = BatchNormal(2, 1e-10, 0.1, True).train()
    x = torch.randn(10, 2, 4, 4) * 3 + 5
    y = bn(x)
    assert torch.allclose(y.mean(dim=(0, 2, 3)), torch.zeros(2), atol=1e-5)
    assert torch.allclose(y.var(dim=(0, 2, 3), unbiased=False), torch.ones(2), atol=1e-4)
    mean, var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False)  # book: np.var (biased)
    assert torch.allclose(bn.running_mean, 0.1 * mean, atol=1e-5)
    assert torch.allclose(bn.running_var, 0.9 + 0.1 * var, atol=1e-4)
    bn.eval()
    expect = (x - bn.running_mean.view(1, 2, 1, 1)) / torch.sqrt(bn.running_var.view(1, 2, 1, 1) + 1e-10)
    assert torch.allclose(bn(x), expect, atol=1e-5)


def test_batch_normal_on_vectors_is_per_feature_and_rescale_is_optional():
    net, rows = build([6, ["batch_normal", {"rescale": False}]])
    assert rows[2].other == 0
    bn = net.body[1][0]
    y = bn.train()(torch.randn(32, 6) * 4)
    assert torch.allclose(y.mean(0), torch.zeros(6), atol=1e-5)
    _, rows = build([6, ["batch_normal"]])
    assert rows[2].other == 12  # scale and shift per feature


def test_activation_defaults_to_model_activation_and_can_be_overridden():
    net, _ = build(
        [
            ["full", {"width": 4}],
            ["full", {"width": 4, "actfunc": "sigmoid"}],
            ["full", {"width": 4, "actfunc": "none"}],
        ],
        activation="tanh",
    )
    kinds = [[type(m).__name__ for m in layer] for layer in net.body]
    assert kinds == [["Flatten", "Linear", "Tanh"], ["Linear", "Sigmoid"], ["Linear"]]


@pytest.mark.parametrize(
    "init, expected_std",
    [
        ({"type": "normal", "std": 0.03}, lambda fi, fo: 0.03),
        ({"type": "xavier_normal"}, lambda fi, fo: (2 / (fi + fo)) ** 0.5),
        ({"type": "he_normal"}, lambda fi, fo: (2 / fi) ** 0.5),
        ({"type": "xavier_uniform"}, lambda fi, fo: (6 / (fi + fo)) ** 0.5 / 3**0.5),
        ({"type": "he_uniform"}, lambda fi, fo: (6 / fi) ** 0.5 / 3**0.5),
        ({"type": "uniform", "low": -0.1, "high": 0.1}, lambda fi, fo: 0.2 / 12**0.5),
    ],
)
def test_init_gives_the_documented_std(init, expected_std):
    cfg = ModelConfig(layers=[["conv", {"ksize": 3, "chn": 64}], ["full", {"width": 256}]], init=InitConfig(**init))
    net, _ = build_model(cfg, (32, 16, 16), [10])
    init_weights(net, cfg.init, seed=0)
    conv, full = net.body[0][0], net.body[1][1]
    assert conv.weight.std().item() == pytest.approx(expected_std(32 * 9, 64 * 9), rel=0.05)  # fan-in = kh·kw·in
    assert full.weight.std().item() == pytest.approx(expected_std(64 * 16 * 16, 256), rel=0.05)
    assert all(float(m.bias.detach().abs().max()) == 0 for m in (conv, full))


def test_param_stats_count_weights_and_kernels_only():
    net, _ = build([["conv", {"ksize": 3, "chn": 2}], ["batch_normal"], 4])
    with torch.no_grad():
        for w in weights_and_kernels(net):
            w.zero_()
        net.body[0][0].bias.fill_(1.0)
    stats = param_stats(net)
    assert stats["weights"] == 3 * 3 * 3 * 2 + 2 * 8 * 8 * 4 + 4 * 5
    assert stats["near_zero"] == stats["weights"] and stats["near_zero_pct"] == 100.0
    assert stats["mean"] == 0.0 and stats["std"] == 0.0


def test_parse_layers_accepts_the_books_python_lists():
    specs = parse_layers(
        [["conv", {"ksize": 3, "chn": 6}], ["max", {"stride": 2}], ["dropout", {"keep_prob": 0.6}], 30]
    )
    assert [s.type for s in specs] == ["conv", "max", "dropout", "full"]
    assert specs[2].args.keep_prob == 0.6 and specs[3].args.width == 30
