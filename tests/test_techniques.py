"""Training techniques from the course: optimizers, schedules, inits, blocks, step logging, early stopping,
ensembles, gradient clipping, and the deep-sigmoid experiment."""

from __future__ import annotations

import json
import re

import pytest
import torch
from conftest import tiny

import regbench
from regbench.config import InitConfig, OptimizerConfig
from regbench.core.errors import ConfigError
from regbench.nn.model import build_model, init_tensor, init_weights
from regbench.nn.modules import BatchNormal
from regbench.optim import OPTIMIZERS, lr_at, make_optimizer
from regbench.resolve import load_config
from regbench.rundir import load_run
from regbench.training.infer import evaluate
from regbench.training.plan import prepare


def build(layers, shape=(3, 8, 8), heads=(5,), **model):
    data = {"name": "synthetic", "shape": [shape[1], shape[2], shape[0]], "classes": list(heads)}
    cfg = load_config({"data": data, "model": {"layers": layers, **model}}).model
    return build_model(cfg, shape, list(heads))


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_each_optimizer_lowers_a_simple_loss(name):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(20))
    lr = 1.0 if name == "adadelta" else 0.05
    opt = make_optimizer([w], OptimizerConfig(name=name, lr=lr), torch.device("cpu"))
    start = float((w**2).sum().detach())
    for _ in range(20):
        opt.zero_grad()
        (w**2).sum().backward()
        opt.step()
    assert float((w**2).sum().detach()) < 0.9 * start


def test_the_documented_optimizers_are_registered():
    expected = {"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta", "adam", "adamw", "adamax", "nadam"}
    assert set(OPTIMIZERS.names()) == expected


def test_optimizer_parameters_reach_torch():
    p = [torch.nn.Parameter(torch.zeros(2))]
    cpu = torch.device("cpu")
    assert make_optimizer(p, OptimizerConfig(name="momentum", momentum=0.8), cpu).defaults["momentum"] == 0.8
    assert make_optimizer(p, OptimizerConfig(name="nesterov"), cpu).defaults["nesterov"] is True
    adamw = make_optimizer(p, OptimizerConfig(name="adamw", weight_decay=0.05, beta2=0.99), cpu)
    assert adamw.defaults["weight_decay"] == 0.05 and adamw.defaults["betas"] == (0.9, 0.99)
    assert make_optimizer(p, OptimizerConfig(name="rmsprop", alpha=0.9), cpu).defaults["alpha"] == 0.9


def test_learning_rate_schedules():
    step = OptimizerConfig(lr=1.0, schedule="step", step_size=2, gamma=0.5)
    assert [lr_at(step, e, 6) for e in (0, 1.9, 2, 4.5)] == [1.0, 1.0, 0.5, 0.25]
    exp = OptimizerConfig(lr=1.0, schedule="exponential", gamma=0.9)
    assert lr_at(exp, 2.5, 10) == pytest.approx(0.81)
    cos = OptimizerConfig(lr=1.0, schedule="cosine", min_lr=0.1)
    assert (
        lr_at(cos, 0, 10) == 1.0
        and lr_at(cos, 5, 10) == pytest.approx(0.55)
        and lr_at(cos, 10, 10) == pytest.approx(0.1)
    )
    warm = OptimizerConfig(lr=1.0, schedule="cosine", warmup=2)
    assert (
        lr_at(warm, 0, 10) == pytest.approx(0.01)
        and lr_at(warm, 1, 10) == pytest.approx(0.505)
        and lr_at(warm, 2, 10) == 1.0
    )
    assert lr_at(OptimizerConfig(lr=0.3), 7, 10) == 0.3


def test_schedule_is_applied_in_training(runs):
    run = regbench.train(
        tiny(train__epochs=3, optimizer__schedule="step", optimizer__step_size=1, optimizer__gamma=0.5),
        runs,
        quiet=True,
    )
    assert [m["lr"] for m in run.metrics] == pytest.approx([0.001, 0.0005, 0.00025])


def test_truncated_normal_aliases_and_bias_constant():
    w = torch.empty(400, 400)
    init_tensor(w, InitConfig(type="truncated_normal", std=0.01), torch.Generator().manual_seed(0))
    assert w.abs().max() <= 0.02 and w.std().item() == pytest.approx(0.0088, rel=0.05)  # 2σ-truncated std
    a, b = torch.empty(300, 300), torch.empty(300, 300)
    init_tensor(a, InitConfig(type="glorot_uniform"), torch.Generator().manual_seed(1))
    init_tensor(b, InitConfig(type="xavier_uniform"), torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    net, _ = build([["conv", {"ksize": 3, "chn": 4}], 6], init={"bias": 0.1})
    init_weights(net, load_config({"model": {"init": {"bias": 0.1}}}).model.init, 0)
    assert torch.all(net.body[0][0].bias == 0.1)


def test_per_layer_init_overrides_the_model_init():
    cfg = load_config(
        {
            "model": {
                "layers": [
                    ["conv", {"ksize": 3, "chn": 64, "init": {"type": "uniform", "low": -0.5, "high": 0.5}}],
                    32,
                ],
                "init": {"type": "normal", "std": 0.01},
            }
        }
    ).model
    net, _ = build_model(cfg, (16, 8, 8), [10])
    init_weights(net, cfg.init, 0)
    conv, full = net.body[0][0], net.body[1][1]
    assert conv.weight.abs().max().item() > 0.45 and full.weight.std().item() == pytest.approx(0.01, rel=0.05)


def test_conv_options_padding_bias_and_inline_batch_normal():
    net, rows = build(
        [
            ["conv", {"ksize": 3, "chn": 4, "padding": "valid", "bias": False, "batch_normal": True}],
            ["conv", {"ksize": 3, "chn": 2, "padding": 2}],
        ]
    )
    assert rows[1].shape == (4, 6, 6) and rows[2].shape == (2, 8, 8)
    kinds = [type(m) for m in net.body[0]]
    assert kinds == [torch.nn.Conv2d, BatchNormal, torch.nn.ReLU] and net.body[0][0].bias is None
    _, rows = build([["conv", {"ksize": 3, "chn": 4, "batch_normal": {"exp_ratio": 0.01}}]])
    assert rows[1].other == 4 + 8  # conv bias + BN scale/shift


def test_explicit_activation_and_flatten_layers():
    net, rows = build(
        [
            ["conv", {"ksize": 3, "chn": 4, "actfunc": "none"}],
            ["batch_normal"],
            ["activation", {"actfunc": "sigmoid"}],
            ["flatten"],
            10,
        ]
    )
    assert rows[4].shape == (4 * 8 * 8,) and isinstance(net.body[2][0], torch.nn.Sigmoid)


def test_serial_block_repeats_with_own_parameters():
    net, rows = build([["serial", {"repeat": 3, "layers": [["conv", {"ksize": 3, "chn": 4}]]}], ["max", {"stride": 2}]])
    assert rows[1].shape == (4, 8, 8) and rows[1].text == "serial×3[conv(3,4)]"
    convs = [m for m in net.body[0].modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 3 and convs[0].weight.shape[1] == 3 and convs[1].weight.shape[1] == 4
    assert rows[1].weights == 3 * 9 * 3 * 4 - 3 * 9 * 3 * 4 + 9 * (3 * 4 + 4 * 4 + 4 * 4)


def test_residual_adds_the_input_and_projects_when_shapes_differ():
    net, rows = build([["residual", {"layers": [["conv", {"ksize": 3, "chn": 3}], ["conv", {"ksize": 3, "chn": 3}]]}]])
    block = net.body[0][0]
    assert rows[1].shape == (3, 8, 8) and block.proj is None
    x = torch.randn(2, 3, 8, 8)
    assert torch.allclose(block(x), block.body(x) + x)
    net, rows = build([["residual", {"layers": [["conv", {"ksize": 3, "chn": 8}], ["max", {"stride": 2}]]}]])
    block = net.body[0][0]
    assert rows[1].shape == (8, 4, 4) and block.proj.kernel_size == (1, 1) and block.proj.stride == (2, 2)
    assert block(torch.randn(2, 3, 8, 8)).shape == (2, 8, 4, 4)
    _, rows = build([8, ["residual", {"layers": [16]}]])
    assert rows[2].shape == (16,)


def test_parallel_concatenates_branches():
    net, rows = build(
        [
            [
                "parallel",
                {
                    "branches": [
                        [["conv", {"ksize": 1, "chn": 4}]],
                        [["conv", {"ksize": 3, "chn": 6}], ["conv", {"ksize": 3, "chn": 2}]],
                        [],
                    ]
                },
            ]
        ]
    )
    assert rows[1].shape == (4 + 2 + 3, 8, 8)
    assert net.body(torch.randn(2, 3, 8, 8)).shape == (2, 9, 8, 8)
    with pytest.raises(ConfigError, match=r"model.layers\[0\]: parallel: branch outputs 4×8×8 \| 3×4×4 differ"):
        build([["parallel", {"branches": [[["conv", {"ksize": 1, "chn": 4}]], [["max", {"stride": 2}]]]}]])


def test_errors_inside_blocks_name_the_nested_path():
    with pytest.raises(ConfigError, match=r"model.layers\[1\].layers\[0\].keep_prob: must be in \(0, 1\]"):
        load_config({"model": {"layers": [10, ["serial", {"layers": [["dropout", {"keep_prob": 2}]]}]]}})
    with pytest.raises(ConfigError, match=r"model.layers\[0\].branches\[1\]\[0\]: max: stride 3×3 does not divide"):
        load_config({"model": {"layers": [["parallel", {"branches": [[], [["max", {"stride": 3}]]]}]]}})


def test_cifar_workshop_ten_conv_net_in_five_lines():
    def stage(c):
        return [
            "serial",
            {"layers": [["conv", {"ksize": 3, "chn": c}], ["conv", {"ksize": 3, "chn": c}], ["max", {"stride": 2}]]},
        ]

    net, rows = build([stage(64), stage(128), stage(256), stage(512), stage(512)], shape=(3, 32, 32), heads=(10,))
    assert sum(isinstance(m, torch.nn.Conv2d) for m in net.modules()) == 10 and rows[5].shape == (512, 1, 1)


def test_steps_jsonl_and_iterations(runs):
    run = regbench.train(tiny(train__iterations=25, train__log_every=10), runs, quiet=True)  # 12 steps per epoch
    steps = [json.loads(line) for line in (run.path / "steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [0, 10, 20] and all(s["loss"] > 0 for s in steps)
    assert run.summary["steps_done"] == 25 and run.summary["epochs_done"] == 3 and len(run.metrics) == 3


def test_eval_train_and_gap(runs, capsys):
    run = regbench.train(tiny(train__eval_train=True), runs)
    assert {"train_eval_loss", "train_eval_acc"} <= run.metrics[-1].keys()
    assert run.summary["gap"] == pytest.approx(run.metrics[-1]["train_eval_acc"] - run.metrics[-1]["val_acc"])
    assert re.search(r"Epoch 2: .* \[train eval \d\.\d{3}\]", capsys.readouterr().out)


def test_early_stopping_stops_and_tests_the_best_epoch(runs):
    cfg = tiny(train__epochs=6, train__early_stop={"patience": 2, "min_delta": 0.5}, train__test_on="best")
    run = regbench.train(cfg, runs, quiet=True)
    s = run.summary
    assert (
        s["best_epoch"] == 1 and s["stopped_early"] == 3 and len(run.metrics) == 3 and s["tested"] == "best (epoch 1)"
    )
    best, last = (torch.load(run.path / f, weights_only=True) for f in ("best.pt", "model.pt"))
    assert any(not torch.equal(best[k], last[k]) for k in best)
    setup = prepare(cfg)
    net, _ = build_model(cfg.model, setup.info.input_shape, setup.info.head_sizes)
    net.load_state_dict(best)
    assert evaluate(net, setup.splits["test"])[1][0] == pytest.approx(s["test_acc"])


def test_early_stopping_needs_a_validation_split(runs):
    with pytest.raises(ConfigError, match="train.early_stop: needs a validation split"):
        regbench.train(tiny(train__early_stop={"patience": 2}, data__split={"train": 0.8, "val": 0}), runs, quiet=True)


def test_ensemble_reports_cumulative_accuracies(runs, capsys):
    run = regbench.train(tiny(train__ensemble=3), runs)
    out = capsys.readouterr().out
    assert [line.split(":")[0] for line in out.splitlines() if line.startswith("[Ens")] == ["[Ens", "[Ens", "[Ens"]
    assert re.search(r"\[Ens: 3\] test accuracy: \d\.\d{3}", out)
    ens = run.summary["ensemble"]
    assert len(ens["test_acc"]) == 3 and [m["seed"] for m in ens["members"]] == [1234, 1235, 1236]
    first = load_run(run.path / ens["members"][0]["path"])
    assert first.status == "completed" and ens["test_acc"][0] == pytest.approx(first.summary["test_acc"])
    assert run.summary["test_acc"] == ens["test_acc"][-1] and len(run.metrics) == 2


def test_gradient_clipping_bounds_each_step(runs):
    cfg = tiny(train__epochs=1, optimizer__name="sgd", optimizer__lr=0.5, train__clip_grad_norm=1e-4)
    run = regbench.train(cfg, runs, quiet=True)
    net, _ = build_model(cfg.model, (1, 8, 8), [3])
    from regbench.training.plan import derive_seed

    init_weights(net, cfg.model.init, derive_seed(cfg.seed, "init"))
    start = torch.cat([p.detach().flatten() for p in net.state_dict().values()])
    end = torch.cat([p.flatten() for p in torch.load(run.path / "model.pt", weights_only=True).values()])
    steps = run.summary["steps_done"]
    assert (end - start).norm() <= steps * 0.5 * 1e-4 * 1.001
    assert run.metrics[0]["grad_norm"] > 1e-4  # recorded before clipping


def test_deep_sigmoid_with_small_init_stays_near_chance_and_he_relu_learns(runs):
    """DLFS ch. 6 on digits: a 5-layer 100-unit MLP with std 0.01 and sigmoid does not learn; He + ReLU does."""

    def run(init, act):
        cfg = load_config(
            {
                "model": {"layers": [100] * 5, "init": init, "activation": act},
                "optimizer": {"name": "sgd", "lr": 0.01},
                "train": {"batch_size": 100, "iterations": 400, "show": 0},
            }
        )
        return regbench.train(cfg, runs, quiet=True)

    sigmoid, relu = run({"type": "normal", "std": 0.01}, "sigmoid"), run({"type": "he_normal"}, "relu")
    assert sigmoid.summary["test_acc"] < 0.2 and relu.summary["test_acc"] > 0.8
    assert sigmoid.metrics[-1]["grad_norm_first"] < 1e-4 < relu.metrics[-1]["grad_norm_first"]
