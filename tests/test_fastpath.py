"""The fast path (train.resident, channels_last, fused, relu_after_max) trains the same model as the plain path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny
from torch import nn

import regbench
from regbench.config import FAST_PATH
from regbench.group import train_group
from regbench.model import build_model, init_weights, relu_after_max

# the book's flowers CNN: conv(3,6)-max(2)-conv(3,12)-max(2)-conv(3,24)-avg(3)
FLOWERS_YAML = Path(__file__).parent.parent / "configs" / "ch8" / "flowers_cnn.yaml"
FLOWERS_CNN = yaml.safe_load(FLOWERS_YAML.read_text(encoding="utf-8"))["model"]["layers"]


def built(layers, reorder: bool) -> nn.Module:
    data = {"name": "synthetic", "shape": [24, 24, 3], "classes": 5}
    cfg = regbench.load_config({"data": data, "model": {"layers": layers}}).model
    net, _ = build_model(cfg, (3, 24, 24), [5])
    init_weights(net, cfg.init, 7)
    if reorder:
        assert relu_after_max(net) == 2  # the two conv → max pairs; the conv before avg keeps its ReLU
    return net


def test_relu_after_max_gives_the_same_values_and_gradients_ties_included():
    plain, fast = built(FLOWERS_CNN, False), built(FLOWERS_CNN, True)
    assert [type(m).__name__ for m in fast.body[1]] == ["MaxPool2d", "ReLU"]
    assert plain.state_dict().keys() == fast.state_dict().keys()  # checkpoints load either way
    fast.load_state_dict(plain.state_dict())
    # small integers make many ties and many windows whose maximum is ≤ 0
    x = torch.randint(-3, 4, (6, 3, 24, 24)).float()
    for net in (plain, fast):
        net.zero_grad()
        out = net(x)
        (out * torch.arange(5.0)).sum().backward()
    assert torch.equal(plain(x), fast(x))
    for p, q in zip(plain.parameters(), fast.parameters(), strict=True):
        assert torch.equal(p.grad, q.grad)


def test_relu_after_max_leaves_other_activations_and_pools_alone():
    layers = [
        ["conv", {"ksize": 3, "chn": 4, "actfunc": "sigmoid"}],
        ["max", {"stride": 2}],
        ["conv", {"ksize": 3, "chn": 4}],
        ["avg", {"stride": 2}],
    ]
    cfg = regbench.load_config({"model": {"layers": layers}}).model
    net, _ = build_model(cfg, (3, 8, 8), [2])
    assert relu_after_max(net) == 0


def metrics(run) -> list[tuple]:
    return [(m["train_loss"], m["train_acc"], m["val_loss"], m["val_acc"]) for m in run.metrics]


def test_fast_path_and_plain_path_train_the_same_model(runs):
    """Every switch off is the plain path. Moving the ReLU and keeping the data resident change nothing;
    channels_last and the fused kernels change the order of float sums, so losses agree to 1e-5."""
    fast = regbench.train(tiny(train__epochs=3), runs, quiet=True)
    plain = regbench.train(tiny(train__epochs=3, **{f"train__{k}": False for k in FAST_PATH}), runs, quiet=True)
    for a, b in zip(metrics(fast), metrics(plain), strict=True):
        assert a[1] == b[1] and a[3] == b[3]  # accuracies
        assert a[0] == pytest.approx(b[0], rel=1e-5) and a[2] == pytest.approx(b[2], rel=1e-5)
    assert fast.summary["test_acc"] == plain.summary["test_acc"]
    for key in ("relu_after_max", "resident"):  # exact: same values in the same order
        one_off = regbench.train(tiny(train__epochs=3, **{f"train__{key}": False}), runs, quiet=True)
        assert metrics(one_off) == metrics(fast), key


def test_stacked_members_match_single_runs_with_the_relu_moved(runs):
    """Side by side, the stacked model gets the same treatment; its members still match their own runs."""
    cfgs = [tiny(seed=s, data__count=60) for s in (1, 2)]
    stacked = train_group(cfgs, runs, quiet=True)
    for cfg, run in zip(cfgs, stacked, strict=True):
        alone = regbench.train(cfg, runs, quiet=True)
        assert run.summary["side_by_side"] == 2
        assert [m["val_acc"] for m in run.metrics] == [m["val_acc"] for m in alone.metrics]
        for a, b in zip(run.metrics, alone.metrics, strict=True):
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)


def test_the_switches_are_config_keys_with_clear_errors(runs):
    with pytest.raises(regbench.ConfigError, match=r"train\.resident"):
        tiny(train__resident="yes please")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_data_in_host_memory_trains_like_resident_data(runs):
    fast = regbench.train(tiny(train__device="cuda"), runs, quiet=True)
    host = regbench.train(tiny(train__device="cuda", train__resident=False), runs, quiet=True)
    assert [m["val_acc"] for m in host.metrics] == [m["val_acc"] for m in fast.metrics]
