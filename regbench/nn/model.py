"""Layer list → torch model (each layer by its registered plain or stacked builder, `registry.build_layers`),
weight init, and the book's parameter statistics."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..config import InitConfig, ModelConfig
from ..core.errors import ConfigError
from ..stacked.layers import StackedConv2d, StackedLinear
from .layers import FullArgs
from .registry import BuildContext, LayerSpec, Shape, build_layers, build_one
from .spec import describe_spec, parse_layers

MAX_PARAMS = 2_000_000_000  # a model this large would not fit a student's machine; refuse before allocating


class Net(nn.Module):
    """The built model: `body` holds one nn.Sequential per entry of the layer list, `out` the output layer.

    `heads` lists the class count of each output head; the output layer has their sum of units and
    `forward` returns the concatenated logits (split them with `split_heads`).
    """

    def __init__(self, body: list[nn.Module], out: nn.Module, heads: list[int], conv: bool):
        super().__init__()
        self.body = nn.Sequential(*body)
        self.out = out
        self.heads = list(heads)
        self.is_conv = conv  # has image-shaped activations, so channels_last pays off

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x))

    def split_heads(self, logits: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.split(logits, self.heads, dim=-1)

    def set_generator(self, generator: torch.Generator | None) -> None:
        """Route the random draws of dropout and noise layers through `generator`."""
        for m in self.modules():
            if hasattr(m, "generator"):
                m.generator = generator

    def set_generators(self, generators: list[torch.Generator]) -> None:
        """Stacked: member k's dropout and noise draws come from `generators[k]`."""
        for m in self.modules():
            if hasattr(m, "generators"):
                m.generators = list(generators)


@dataclass(frozen=True)
class LayerRow:
    """One line of `regbench show`: a layer, its output shape and its parameter counts."""

    index: str
    text: str
    shape: Shape
    weights: int  # weights and kernels (the book's count)
    other: int  # biases, batch_normal scale/shift


def is_weight_layer(m: nn.Module) -> bool:
    return isinstance(m, (nn.Linear, nn.Conv2d, StackedLinear, StackedConv2d))


def is_stacked(m: nn.Module) -> bool:
    return isinstance(m, (StackedLinear, StackedConv2d))


def count(mods: list[nn.Module]) -> tuple[int, int]:
    weights = sum(m.weight.numel() for mod in mods for m in mod.modules() if is_weight_layer(m))
    total = sum(p.numel() for mod in mods for p in mod.parameters())
    return weights, total - weights


def build_model(
    cfg: ModelConfig, input_shape: Shape, heads: list[int], members: list[ModelConfig] | None = None
) -> tuple[Net, list[LayerRow]]:
    """Build the layer list for `input_shape` (C, H, W) or (F,) with one output unit per class of each head.

    With `members` (K model configs that differ only in per-member values such as dropout keep_prob),
    builds the K-member stacked model (regbench.stacked.layers). Parameters keep torch's default values; call
    `init_weights` next. Raises ConfigError naming the layer (`model.layers[i]`) when one does not fit.
    """
    specs = parse_layers(cfg.layers)
    variants = [parse_layers(m.layers) for m in members] if members else None
    ctx = BuildContext(activation=cfg.activation, members=len(members) if members else 1)
    # shapes and sizes first, on the meta device, so an absurd width fails here and not in the allocator
    with torch.device("meta"):
        _build(specs, input_shape, heads, ctx, variants)
    return _build(specs, input_shape, heads, ctx, variants)


def _build(specs, input_shape: Shape, heads: list[int], ctx: BuildContext, variants) -> tuple[Net, list[LayerRow]]:
    shape = tuple(input_shape)
    rows, total = [LayerRow("", "input", shape, 0, 0)], 0
    built = build_layers(specs, shape, ctx, "model.layers", variants)
    for i, (spec, (mod, shape)) in enumerate(zip(specs, built, strict=True)):
        weights, other = count([mod])
        total += weights + other
        rows.append(LayerRow(str(i), describe_spec(spec), shape, weights, other))
    n_out = sum(heads)
    # the output layer: a full layer without activation, built like any other (plain or stacked)
    mods, _ = build_one(LayerSpec("full", FullArgs(n_out, actfunc="none")), shape, ctx, "model.out")
    out = nn.Sequential(*mods)
    weights, other = count([out])
    total += weights + other
    head_text = f" heads {'+'.join(map(str, heads))}" if len(heads) > 1 else ""
    rows.append(LayerRow("out", "output (full, no actfunc)" + head_text, (n_out,), weights, other))
    if total * ctx.members > MAX_PARAMS:
        raise ConfigError(
            f"the model has {total * ctx.members:,} parameters, more than the {MAX_PARAMS:,} regbench allows; "
            "use smaller widths or channel counts",
            path="model.layers",
        )
    conv = len(input_shape) == 3
    return Net([mod for mod, _ in built], out, heads, conv), rows


def relu_after_max(net: Net) -> int:
    """Move each ReLU that ends a layer followed by a max pool behind the pool, in place (the fast path's
    `train.relu_after_max`); returns how many moved.

    ReLU is monotonic, so max(relu(x)) = relu(max(x)) exactly, and the gradients are the same too (where
    the window's max is ≤ 0 both give 0); the ReLU then runs on a quarter of the values for a 2×2 pool.
    Only parameter-free modules move, so the state_dict keys stay those of the model as written.
    """
    moved = 0
    for a, b in zip(list(net.body)[:-1], list(net.body)[1:], strict=True):
        if len(a) and type(a[-1]) is nn.ReLU and len(b) and isinstance(b[0], nn.MaxPool2d):
            del a[len(a) - 1]
            b.insert(1, nn.ReLU(inplace=True))  # the pool keeps its input and indices, not its output
            moved += 1
    return moved


# ----------------------------------------------------------------------------------------------- init
def fans(weight: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out): Linear (out, in); Conv2d (out, in, kh, kw) → in·kh·kw, out·kh·kw (as Keras)."""
    receptive = math.prod(weight.shape[2:]) if weight.dim() > 2 else 1
    return weight.shape[1] * receptive, weight.shape[0] * receptive


def init_tensor(w: torch.Tensor, cfg: InitConfig, g: torch.Generator) -> None:
    """Fill `w` in place from `g` according to `cfg` (draws on the CPU so every device gets the same values)."""
    fan_in, fan_out = fans(w)
    buf = torch.empty(w.shape, dtype=torch.float32)
    kind = ALIASES.get(cfg.type, cfg.type)
    if kind == "normal":
        buf.normal_(cfg.mean, cfg.std, generator=g)
    elif kind == "truncated_normal":  # TF: redraw values more than 2 std from the mean
        buf.normal_(0.0, 1.0, generator=g)
        while (bad := buf.abs() > 2).any():
            buf[bad] = torch.randn(int(bad.sum()), generator=g)
        buf.mul_(cfg.std).add_(cfg.mean)
    elif kind == "uniform":
        buf.uniform_(cfg.low, cfg.high, generator=g)
    elif kind == "xavier_normal":
        buf.normal_(0.0, math.sqrt(2.0 / (fan_in + fan_out)), generator=g)
    elif kind == "xavier_uniform":
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        buf.uniform_(-limit, limit, generator=g)
    elif kind == "he_normal":
        buf.normal_(0.0, math.sqrt(2.0 / fan_in), generator=g)
    elif kind == "he_uniform":
        limit = math.sqrt(6.0 / fan_in)
        buf.uniform_(-limit, limit, generator=g)
    else:  # config validation keeps this unreachable
        raise ValueError(f"unknown init type {cfg.type}")
    with torch.no_grad():
        w.copy_(buf)


ALIASES = {
    "glorot_normal": "xavier_normal",
    "glorot_uniform": "xavier_uniform",
    "random_uniform": "uniform",
    "random_normal": "normal",
}


def init_weights(net: Net, cfg: InitConfig, seed: int | list[int]) -> None:
    """Book init: weights and kernels from the layer's `init` or `cfg` (default normal std 0.03), biases
    constant (`bias`, default 0), in layer order from one generator seeded with `seed`. A stacked model
    takes one seed per member, and member k gets exactly the values a single model with seed k would."""
    seeds = seed if isinstance(seed, list) else [seed]
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    for m in net.modules():
        if not is_weight_layer(m):
            continue
        own = getattr(m, "init_cfg", None) or cfg
        for k, g in enumerate(gens):
            init_tensor(m.weight[k] if is_stacked(m) else m.weight, own, g)
        if m.bias is not None:
            with torch.no_grad():
                m.bias.fill_(own.bias)


# ----------------------------------------------------------------------------------------------- statistics
def weights_and_kernels(net: nn.Module) -> list[torch.Tensor]:
    """The book's collect_params: weights of full layers (output included) and conv kernels; no biases."""
    return [m.weight for m in net.modules() if is_weight_layer(m)]


NEAR_ZERO = 1e-5  # book: -1e-5 <= x <= 1e-5 counts as near 0


def param_stats(net: nn.Module, member: int | None = None) -> dict[str, float | int]:
    """Count, near-zero count, mean and (population) std of the weights and kernels, as the book prints them
    (of stacked member `member`, for a stacked model)."""
    with torch.no_grad():
        ws = weights_and_kernels(net)
        if member is not None:
            ws = [w[member] for w in ws]
        flat = torch.cat([w.detach().reshape(-1).double().cpu() for w in ws])
    n = flat.numel()
    near = int((flat.abs() <= NEAR_ZERO).sum())
    return {
        "weights": n,
        "near_zero": near,
        "near_zero_pct": 100.0 * near / n if n else 0.0,
        "mean": float(flat.mean()) if n else 0.0,
        "std": float(flat.std(correction=0)) if n else 0.0,
    }
