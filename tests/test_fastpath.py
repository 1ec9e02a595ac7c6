"""The fast path (train.resident, channels_last, fused, relu_after_max, reuse_memory) trains the same model as
the plain path."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny
from torch import nn

import regbench
from regbench.config import FAST_PATH
from regbench.nn.model import build_model, init_weights, relu_after_max
from regbench.training.execute import train_group

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
    assert [type(m).__name__ for m in fast.body[1]] == ["MaxPool", "ReLU"]
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


# A fresh process (glibc's default settings) mallocs, touches and frees three 4 MiB blocks 50 times, the
# pattern of a training step's activations, then does the same after keep_freed_memory(); it prints the
# minor page faults of each half. (C's malloc directly: torch's small allocations in between would make
# the default's behaviour depend on where they land.)
FAULTS = """
import ctypes, resource
from regbench.core.resources import keep_freed_memory
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
def faults():
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(50):
        blocks = [libc.malloc(4 << 20) for _ in range(3)]
        for b in blocks:
            ctypes.memset(b, 1, 4 << 20)
        for b in blocks:
            libc.free(b)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start
before = faults()
kept = keep_freed_memory()
print(before, faults(), kept)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="reuse_memory tunes glibc's malloc")
def test_reuse_memory_stops_the_page_faults_of_each_step():
    out = subprocess.run([sys.executable, "-c", FAULTS], capture_output=True, text=True, check=True).stdout
    before, after, kept = out.split()
    assert kept == "True"
    assert int(before) > 50 * 1000  # each round faults its 12 MiB in again (3,000 pages)
    assert int(after) < 5 * 1000  # the first round only


@pytest.mark.parametrize(
    "shape, window, channels_last",
    [
        ((4, 6, 16, 16), 2, False),  # training: max_pool_nchw (≥ 8×8 pooled positions)
        ((4, 6, 16, 16), 2, True),  # training: torch's kernel (a small map); evaluation: the slices
        ((2, 6, 96, 96), 2, True),  # training: max_pool_nhwc (the flowers CNN's first pool)
        ((2, 3, 128, 70), 2, True),  # max_pool_nhwc with 3 channels, a rectangular map
        ((2, 4, 96, 96), 2, True),  # 4 NHWC channels: torch's kernel
        ((1, 3, 16, 512), 2, True),  # max_pool_nhwc on a wide map (offsets past a byte)
        ((1, 6, 97, 96), 2, True),  # an odd height: torch's kernel
        ((3, 5, 24, 27), 3, False),
        ((3, 5, 26, 20), (2, 5), False),  # a rectangular window
        ((3, 4, 33, 35), 2, False),  # sizes the window does not divide: the last row and column are dropped
        ((3, 5, 16, 16), 1, False),  # a 1×1 window: the kernel (the slices would return a view of the input)
        ((3, 5, 16, 16), (2, 1), False),
        ((3, 20, 8, 8), 2, True),  # ≥ 16 NHWC channels: the kernel throughout
    ],
)
def test_max_pool_gives_the_kernels_values_and_gradients_ties_included(shape, window, channels_last):
    """regbench's MaxPool computes from elementwise operations where that is faster than torch's CPU
    kernel; small integers make ties in most windows, where the gradient must go where the kernel sends it."""
    from regbench.nn.pooling import MaxPool

    x = torch.randint(-2, 3, shape, generator=torch.Generator().manual_seed(0)).float()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    ours, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    a, b = MaxPool(window)(ours), nn.functional.max_pool2d(theirs, window, window)
    grad = torch.randn(b.shape, generator=torch.Generator().manual_seed(1))
    a.backward(grad)
    b.backward(grad)
    assert torch.equal(a, b) and a.stride() == b.stride()
    assert torch.equal(ours.grad, theirs.grad) and ours.grad.stride() == theirs.grad.stride()
    with torch.inference_mode():
        c = MaxPool(window)(x)
    assert torch.equal(c, b) and c.stride() == b.stride()


def test_max_pool_takes_the_sliced_path_where_it_is_faster(monkeypatch):
    """The test above would pass with the kernel everywhere: check that the other paths are really used."""
    from regbench.nn import pooling

    calls = []
    monkeypatch.setattr(nn.MaxPool2d, "forward", lambda self, x: calls.append(tuple(x.shape)) or None)
    built = []
    for name in ("max_pool_nchw", "max_pool_nhwc"):
        real = getattr(pooling, name)
        monkeypatch.setattr(pooling, name, lambda *a, real=real, name=name: built.append(name) or real(*a))
    x = torch.randn(2, 6, 16, 16)
    assert pooling.MaxPool(2)(x.requires_grad_()) is not None and built == ["max_pool_nchw"]
    with torch.inference_mode():
        assert pooling.MaxPool(2)(x.contiguous(memory_format=torch.channels_last)) is not None and calls == []
    pooling.MaxPool(2)(x.contiguous(memory_format=torch.channels_last))  # NHWC, a small map: the kernel
    assert calls == [(2, 6, 16, 16)]
    big = torch.randn(1, 6, 96, 96).contiguous(memory_format=torch.channels_last).requires_grad_()
    assert pooling.MaxPool(2)(big).is_contiguous(memory_format=torch.channels_last)
    assert built == ["max_pool_nchw", "max_pool_nhwc"] and len(calls) == 1
    for shape in [(1, 4, 96, 96), (1, 8, 96, 96), (1, 6, 97, 96)]:  # the kernel: 4 or 8 channels, an odd size
        pooling.MaxPool(2)(torch.randn(shape).contiguous(memory_format=torch.channels_last).requires_grad_())
    assert len(built) == 2 and calls[1:] == [(1, 4, 96, 96), (1, 8, 96, 96), (1, 6, 97, 96)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_max_pool_nhwc_gives_the_kernels_indices_in_every_float_dtype(dtype):
    """max_pool_nhwc compares into x's dtype and builds the index in float32 (float64 for float64 input):
    the 0/1 flags and indices up to 96·96 must stay exact in half precision too, ties and infinities included."""
    from regbench.nn.pooling import MaxPool

    g = torch.Generator().manual_seed(0)
    x = torch.randint(-2, 3, (2, 6, 96, 96), generator=g).to(dtype)
    x[0, 0, :2] = float("inf")
    x[1, 1, :, :2] = -float("inf")
    x = x.contiguous(memory_format=torch.channels_last)
    ours, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    a, b = MaxPool(2)(ours), nn.functional.max_pool2d(theirs, 2, 2)
    assert type(a.grad_fn).__name__ == "IndexedMaxPoolBackward"  # max_pool_nhwc, not the kernel
    grad = torch.randn(b.shape, generator=g).to(dtype)
    a.backward(grad)
    b.backward(grad)
    assert torch.equal(a, b) and torch.equal(ours.grad, theirs.grad) and ours.grad.stride() == theirs.grad.stride()


def test_avg_pool_works_under_torch_func():
    """AvgPool's gradient hook must not break torch.func (vmap cannot query a memory format)."""
    from torch.func import jacrev

    from regbench.nn.pooling import AvgPool

    x = torch.randn(1, 6, 12, 12).contiguous(memory_format=torch.channels_last)
    ours = jacrev(lambda t: AvgPool(3)(t).flatten(1))(x)
    assert torch.equal(ours, jacrev(lambda t: nn.functional.avg_pool2d(t, 3, 3).flatten(1))(x))


@pytest.mark.parametrize("channels_last", [True, False])
def test_avg_pool_gets_its_gradient_in_its_own_memory_format(channels_last):
    """A flatten after an NHWC avg pool sends back an NCHW gradient, which torch's CPU avg-pool backward
    converts element by element (6× slower); AvgPool hands its backward an NHWC one, with equal values."""
    from regbench.nn.pooling import AvgPool

    x = torch.randn(4, 6, 12, 12, generator=torch.Generator().manual_seed(0))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    ours, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = AvgPool(3)(ours)
    seen = []
    out.grad_fn.register_prehook(lambda grads: seen.append(grads[0].is_contiguous(memory_format=torch.channels_last)))
    grad = torch.randn(4, 6 * 4 * 4, generator=torch.Generator().manual_seed(1))
    out.flatten(1).backward(grad)
    nn.functional.avg_pool2d(theirs, 3, 3).flatten(1).backward(grad)
    assert seen == [channels_last]  # NCHW stays NCHW (its gradient is contiguous already)
    assert torch.equal(ours.grad, theirs.grad) and ours.grad.stride() == theirs.grad.stride()


def test_a_stride_1_max_pool_trains_with_the_relu_moved_behind_it(runs):
    """A 1×1 max pool after a conv gets the conv's in-place ReLU (relu_after_max); in NCHW (the plain
    path, and side by side) its output must not be a view of its input, which autograd refuses."""
    layers = [["conv", {"ksize": 3, "chn": 4}], ["max", {"stride": 1}], 8]
    for over in ({"train__channels_last": False}, {"train__ensemble": 2}):
        run = regbench.train(tiny(model__layers=layers, train__epochs=1, **over), runs, quiet=True)
        assert run.summary["status"] == "completed"


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
    assert fast.summary["reuse_memory"] == (platform.libc_ver()[0] == "glibc")  # what was in effect
    for key in ("relu_after_max", "resident", "reuse_memory"):  # exact: same values in the same order
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
