"""Side-by-side (stacked) training: every member trains as it would alone, for every layer type and
optimizer; a diverging member never spoils another; each member writes an ordinary run directory."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny

import regbench
from regbench.config import OptimizerConfig
from regbench.core.errors import DivergedError
from regbench.nn.model import build_model, init_weights
from regbench.nn.registry import LAYERS
from regbench.optim import OPTIMIZERS, make_optimizer
from regbench.resolve import load_config
from regbench.stacked import layers as stacked_layers
from regbench.stacked.optim import StackedOptimizer
from regbench.training.execute import can_stack, stack_key, train_group

RTOL = 2e-4  # stacked kernels (grouped convolutions, batched products) sum in another order than solo ones

LAYER_CASES = {
    "full": [16, ["full", {"width": 8, "actfunc": "tanh"}]],
    "conv_pools": [
        ["conv", {"ksize": 3, "chn": 4}],
        ["max", {"stride": 2}],
        ["conv", {"ksize": [2, 3], "chn": 3, "stride": 2}],
        ["avg", {"stride": 2}],
    ],
    "conv_padding": [
        ["conv", {"ksize": 3, "chn": 4, "padding": "valid", "bias": False}],
        ["conv", {"ksize": 2, "chn": 2}],
        8,
    ],
    "dropout": [["conv", {"ksize": 3, "chn": 4}], ["dropout", {"keep_prob": 0.6}], 16, ["dropout", {"keep_prob": 0.8}]],
    "dropout_dlfs": [  # "Deep Learning from Scratch" dropout: unscaled masks, × keep_prob in evaluation
        ["conv", {"ksize": 3, "chn": 4}],
        ["dropout", {"keep_prob": 0.6, "scale": "eval"}],
        16,
        ["dropout", {"keep_prob": 0.8, "scale": "eval"}],
    ],
    "noise": [
        ["noise", {"std": 0.05}],
        ["conv", {"ksize": 3, "chn": 4}],
        16,
        ["noise", {"type": "uniform", "low": -0.1, "high": 0.1, "ratio": 0.5}],
    ],
    "batch_normal": [
        ["batch_normal"],
        ["conv", {"ksize": 3, "chn": 4, "bias": False, "batch_normal": True}],
        ["max", {"stride": 2}],
        16,
        ["batch_normal", {"exp_ratio": 0.1}],
    ],
    "activation_flatten": [
        ["conv", {"ksize": 3, "chn": 4, "actfunc": "none"}],
        ["activation", {"actfunc": "sigmoid"}],
        ["flatten"],
        10,
    ],
    "serial": [
        ["serial", {"repeat": 2, "layers": [["conv", {"ksize": 3, "chn": 4}], ["dropout", {"keep_prob": 0.9}]]}],
        ["max", {"stride": 2}],
    ],
    "residual": [
        ["residual", {"layers": [["conv", {"ksize": 3, "chn": 6}], ["max", {"stride": 2}]]}],
        ["residual", {"layers": [["conv", {"ksize": 3, "chn": 6}]]}],
        8,
        ["residual", {"layers": [12]}],
    ],
    "parallel": [
        ["parallel", {"branches": [[["conv", {"ksize": 1, "chn": 3}]], [["conv", {"ksize": 3, "chn": 2}]], []]}],
        ["max", {"stride": 2}],
        ["parallel", {"branches": [[6], [4]]}],
    ],
}


def member_cfgs(layers, opt="sgd", lrs=(0.05, 0.1, 0.02), **over):
    """Three members that differ in seed, lr, L2 and dropout keep_prob/noise std where the layers have them."""
    cfgs = []
    for i, lr in enumerate(lrs):
        layer_list = [_vary(e, i) for e in layers]
        cfg = tiny(
            seed=11 + i,
            optimizer__name=opt,
            optimizer__lr=lr,
            regularizer__l2_decay=0.001 * i,
            model__layers=layer_list,
            **over,
        )
        cfgs.append(cfg)
    return cfgs


def _vary(entry, i):
    if isinstance(entry, list) and entry[0] == "dropout":
        return ["dropout", {**entry[1], "keep_prob": entry[1]["keep_prob"] - 0.1 * i}]
    if isinstance(entry, list) and entry[0] == "noise" and entry[1].get("type", "normal") == "normal":
        return ["noise", {**entry[1], "std": entry[1]["std"] * (1 + i)}]
    return entry


TIMINGS = ("epoch_s", "total_s", "steps_s", "eval_s")
NORMS = ("grad_norm", "grad_norm_first")  # sampled on the same steps; a gradient amplifies rounding (batch norm)


def numbers(run):
    """Every metrics column but the timings and norms (losses, accuracies, lr), then the test results."""
    rows = [flat([m[k] for k in sorted(m) if k not in TIMINGS + NORMS]) for m in run.metrics]
    return rows + [flat([run.summary["test_loss"], run.summary["test_acc"]])]


def flat(values):
    """Accuracies of several heads are lists: their items, in order."""
    return [x for v in values for x in (v if isinstance(v, list) else [v])]


def assert_same(stacked, solo):
    assert [sorted(m) for m in stacked.metrics] == [sorted(m) for m in solo.metrics]
    for a, b in zip(numbers(stacked), numbers(solo), strict=True):
        assert a == pytest.approx(b, rel=RTOL, abs=1e-6)
    for a, b in zip(stacked.metrics, solo.metrics, strict=True):
        assert [a[k] for k in NORMS] == pytest.approx([b[k] for k in NORMS], rel=1e-2), "grad_norm"
    sa, sb = (torch.load(r.path / "model.pt", weights_only=True) for r in (stacked, solo))
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.allclose(sa[k], sb[k], rtol=1e-2, atol=2e-3), k  # a unit near a ReLU kink amplifies rounding


@pytest.mark.parametrize("case", LAYER_CASES)
def test_each_layer_type_stacked_equals_solo(case, runs):
    cfgs = member_cfgs(LAYER_CASES[case])
    assert can_stack(cfgs)
    stacked = train_group(cfgs, runs / "stacked", quiet=True)
    for cfg, run in zip(cfgs, stacked, strict=True):
        assert run.status == "completed" and run.config["seed"] == cfg.seed
        assert_same(run, regbench.train(cfg, runs / "solo", quiet=True))


def test_two_heads_stacked_equals_solo(runs):
    cfgs = member_cfgs(
        [["conv", {"ksize": 3, "chn": 4}], ["max", {"stride": 2}], 16], data__classes=[3, 4], data__count=200
    )
    stacked = train_group(cfgs, runs / "stacked", quiet=True)
    for cfg, run in zip(cfgs, stacked, strict=True):
        assert len(run.summary["test_acc"]) == 2
        assert_same(run, regbench.train(cfg, runs / "solo", quiet=True))


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_each_optimizer_stacked_equals_solo_training(name, runs):
    lrs = (1.0, 0.5, 2.0) if name == "adadelta" else (0.01, 0.003, 0.02)
    cfgs = member_cfgs([16], opt=name, lrs=lrs, optimizer__weight_decay=0.01)
    stacked = train_group(cfgs, runs / "stacked", quiet=True)
    for cfg, run in zip(cfgs, stacked, strict=True):
        assert_same(run, regbench.train(cfg, runs / "solo", quiet=True))


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_stacked_update_rules_match_torch_optim_member_by_member(name):
    torch.manual_seed(0)
    k, shapes = 3, [(5, 4), (5,)]
    cfgs = [OptimizerConfig(name=name, lr=lr, weight_decay=wd) for lr, wd in ((0.1, 0.0), (0.03, 0.01), (0.2, 0.05))]
    stacked = [torch.randn(k, *s, requires_grad=True) for s in shapes]
    solo = [[p[m].detach().clone().requires_grad_() for p in stacked] for m in range(k)]
    opt = StackedOptimizer(stacked, cfgs)
    torch_opts = [make_optimizer(solo[m], cfgs[m], torch.device("cpu"), fused=False) for m in range(k)]
    for _ in range(6):
        grads = [torch.randn(k, *s) for s in shapes]
        for p, g in zip(stacked, grads, strict=True):
            p.grad = g.clone()
        opt.step()
        for m in range(k):
            for p, g in zip(solo[m], grads, strict=True):
                p.grad = g[m].clone()
            torch_opts[m].step()
    for m in range(k):
        for p, q in zip(stacked, solo[m], strict=True):
            assert torch.allclose(p[m], q, rtol=1e-5, atol=1e-6), (name, m)
        # the member's state converts to the torch optimizer's own state_dict format
        sd = opt.member_state_dict(m, torch_opts[m].state_dict())
        fresh = make_optimizer(
            [q.detach().clone().requires_grad_() for q in solo[m]], cfgs[m], torch.device("cpu"), fused=False
        )
        fresh.load_state_dict(sd)


def test_a_diverging_member_never_spoils_another(runs):
    cfgs = member_cfgs([["conv", {"ksize": 3, "chn": 4}], 16], lrs=(0.05, 1e9, 0.02), train__epochs=3)
    with pytest.raises(DivergedError, match="1 of 3 runs diverged"):
        train_group(cfgs, runs / "stacked", quiet=True)
    by_seed = {r.summary["seed"]: r for r in map(regbench.load_run, (runs / "stacked").iterdir())}
    bad = by_seed[cfgs[1].seed]
    assert bad.status == "diverged" and "diverged" in bad.summary["error"]
    for cfg in (cfgs[0], cfgs[2]):
        assert by_seed[cfg.seed].status == "completed"
        assert_same(by_seed[cfg.seed], regbench.train(cfg, runs / "solo", quiet=True))


def test_members_write_ordinary_run_directories(runs):
    cfgs = member_cfgs([["conv", {"ksize": 3, "chn": 4}], ["dropout", {"keep_prob": 0.7}], 16])
    stacked = train_group(cfgs, runs, quiet=True)
    for cfg, run in zip(cfgs, stacked, strict=True):
        assert {"config.yaml", "metrics.jsonl", "summary.json", "model.pt", "checkpoint.pt", "log.txt"} <= {
            p.name for p in run.path.iterdir()
        }
        assert regbench.load_config(run.config) == cfg  # its own seed, lr, l2 and keep_prob
        net, _ = build_model(cfg.model, (1, 8, 8), [3])
        net.load_state_dict(run.state_dict())  # loadable by the single-model builder
        log = (run.path / "log.txt").read_text(encoding="utf-8")
        assert log.startswith("Model tiny train started:\n") and "Model tiny test report" in log  # as if alone


def test_early_stopping_member_freezes_while_others_go_on(runs):
    cfgs = member_cfgs([16], train__epochs=4)
    cfgs[0] = load_config(cfgs[0].to_dict(), {"train.early_stop": {"patience": 1, "min_delta": 0.9}})
    cfgs = [
        load_config(c.to_dict(), {"train.early_stop": cfgs[0].train.early_stop.__dict__}) if i == 0 else c
        for i, c in enumerate(cfgs)
    ]
    assert not can_stack(cfgs)  # early stopping settings are part of the architecture of a group
    same = [
        load_config(c.to_dict(), {"train.early_stop": {"patience": 1, "min_delta": 0.0}})
        for c in member_cfgs([16], train__epochs=4)
    ]
    stacked = train_group(same, runs / "stacked", quiet=True)
    for cfg, run in zip(same, stacked, strict=True):
        solo = regbench.train(cfg, runs / "solo", quiet=True)
        assert run.summary.get("stopped_early") == solo.summary.get("stopped_early")
        assert_same(run, solo)


def test_stack_key_ignores_only_member_values():
    a = tiny(seed=1, optimizer__lr=0.1, model__layers=[["dropout", {"keep_prob": 0.5}], 8])
    b = tiny(seed=2, optimizer__lr=0.2, name="other", model__layers=[["dropout", {"keep_prob": 0.9}], 8])
    assert stack_key(a) == stack_key(b)
    assert stack_key(a) != stack_key(tiny(model__layers=[["dropout", {"keep_prob": 0.5}], 9]))
    assert stack_key(a) != stack_key(tiny(train__batch_size=20, model__layers=[["dropout", {"keep_prob": 0.5}], 8]))
    assert not can_stack([a])


def test_members_may_differ_in_what_they_print(runs):
    """train.report, show and show_params do not change training: such runs stack, each printing its own."""
    a = tiny(name="plain")
    b = tiny(name="l1", regularizer__l1_decay=0.01, train__show_params=True, train__show=2, train__report=0)
    assert can_stack([a, b])
    plain, l1 = train_group([a, b], runs, quiet=True)
    assert not (plain.path / "params_hist.png").exists() and (l1.path / "params_hist.png").is_file()
    assert "Near 0 parameters" in (l1.path / "log.txt").read_text(encoding="utf-8")
    assert "Near 0 parameters" not in (plain.path / "log.txt").read_text(encoding="utf-8")
    assert_same(l1, regbench.train(b, runs / "solo", quiet=True))


def test_stacked_init_equals_solo_init():
    cfg = tiny()
    net, _ = build_model(cfg.model, (1, 8, 8), [3], members=[cfg.model] * 3)
    init_weights(net, cfg.model.init, [5, 6, 7])
    for m, seed in enumerate([5, 6, 7]):
        solo, _ = build_model(cfg.model, (1, 8, 8), [3])
        init_weights(solo, cfg.model.init, seed)
        for (name, p), q in zip(net.state_dict().items(), solo.state_dict().values(), strict=True):
            assert torch.equal(p[m], q), name


def test_every_layer_type_has_a_stacked_builder_and_plain_builds_hold_no_stacked_modules():
    assert [n for n in LAYERS if LAYERS[n].stacked_build is None] == []
    layers = [
        ["batch_normal"],
        ["conv", {"ksize": 3, "chn": 4, "batch_normal": True}],
        ["residual", {"layers": [["conv", {"ksize": 3, "chn": 6}], ["max", {"stride": 2}]]}],
        ["dropout", {"keep_prob": 0.5}],
        ["parallel", {"branches": [[6], [["noise"], 4]]}],
    ]
    cfg = tiny(model__layers=layers)
    net, _ = build_model(cfg.model, (1, 8, 8), [3])
    stacked_types = {
        c for c in vars(stacked_layers).values() if isinstance(c, type) and c.__name__.startswith("Stacked")
    }
    assert not any(type(m) in stacked_types for m in net.modules())
    net, _ = build_model(cfg.model, (1, 8, 8), [3], members=[cfg.model] * 2)
    assert not any(type(m) in (torch.nn.Linear, torch.nn.Conv2d) for m in net.modules())


@pytest.mark.parametrize("set_to_none", [True, False])
def test_stacked_optimizer_zero_grad_honours_set_to_none_like_torch(set_to_none):
    params = [torch.randn(2, 3, requires_grad=True), torch.randn(2, requires_grad=True)]
    opt = StackedOptimizer(params, [OptimizerConfig(name="sgd", lr=0.1)] * 2)
    params[0].grad = torch.ones(2, 3)  # params[1] has no gradient yet: it stays None either way
    kept = params[0].grad
    opt.zero_grad(set_to_none=set_to_none)
    if set_to_none:
        assert params[0].grad is None
    else:
        assert params[0].grad is kept and torch.equal(kept, torch.zeros(2, 3))
    assert params[1].grad is None
    opt.zero_grad()  # torch's default: set_to_none=True
    assert params[0].grad is None
