"""The book's layer types: one argument dataclass (book names and defaults) and one build function each.

A layer list entry is an int (a fully connected layer of that width) or `[type]` / `[type, {params}]`.
A build function takes its arguments, the incoming shape — `(C, H, W)` for images, `(F,)` for vectors — and
the build context, and returns `(modules, out_shape)`, so in-channels and the flatten before a full layer
are inferred, never written down. `ctx.members` is the number of same-shaped models built side by side
(1 for an ordinary run).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Activation, InitConfig
from ..core.errors import ConfigError
from ..core.registry import Registry
from ..core.schema import describe, parse, require, to_plain
from ..stacked.layers import (
    StackedBatchNormal,
    StackedConv2d,
    StackedDropout,
    StackedFlatten,
    StackedLinear,
    StackedNoise,
    StackedParallel,
    keep_mask,
)
from .pooling import AvgPool, MaxPool

Shape = tuple[int, ...]


class LayerError(ValueError):
    """A layer that does not fit its input shape; the builder adds the layer's index and type."""


@dataclass(frozen=True)
class BuildContext:
    activation: str = "relu"  # model.activation, the default actfunc
    members: int = 1  # K same-shaped models side by side
    path: str = "model.layers"  # key path of the layer being built, for errors in nested blocks
    variants: tuple[Any, ...] | None = None  # stacked: the K members' arguments of the layer being built

    def each(self, name: str) -> list[Any]:
        """A parameter's value for every member (stacked mode)."""
        return [getattr(v, name) for v in self.variants or ()]


@dataclass(frozen=True)
class LayerType:
    name: str
    args: type  # frozen dataclass of the layer's parameters
    build: Callable[[Any, Shape, BuildContext], tuple[list[nn.Module], Shape]]
    doc: str


LAYERS: Registry[LayerType] = Registry("layer type")


def layer(name: str, args: type) -> Callable:
    """Register `fn` as the build function of layer type `name` whose parameters are `args`."""

    def deco(fn):
        LAYERS.add(name, LayerType(name, args, fn, (fn.__doc__ or "").strip().splitlines()[0]))
        return fn

    return deco


def pair(v: int | list[int], field: str) -> tuple[int, int]:
    """Book's get_conf_param_2d: an int means the same value for height and width."""
    if isinstance(v, int):
        return v, v
    require(len(v) == 2, field, "must be an int or a list [h, w]", v)
    return v[0], v[1]


def check_pair(v: int | list[int], field: str, low: int = 1) -> None:
    h, w = pair(v, field)
    require(h >= low and w >= low, field, f"must be ≥ {low}", v)


def activation(name: str | None, ctx: BuildContext) -> list[nn.Module]:
    name = name or ctx.activation
    return {
        "relu": [nn.ReLU()],
        "sigmoid": [nn.Sigmoid()],
        "tanh": [nn.Tanh()],
        "leaky_relu": [nn.LeakyReLU(0.01)],
        "elu": [nn.ELU()],
        "gelu": [nn.GELU()],
        "none": [],
    }[name]


# the single-model module, or its K-member version (regbench.stacked.layers) when ctx.members > 1
def linear_layer(n_in: int, n_out: int, bias: bool, ctx: BuildContext) -> nn.Module:
    return StackedLinear(ctx.members, n_in, n_out, bias) if ctx.members > 1 else nn.Linear(n_in, n_out, bias=bias)


def conv_layer(
    c_in: int, c_out: int, kernel: tuple[int, int], stride, padding, bias: bool, ctx: BuildContext
) -> nn.Module:
    if ctx.members > 1:
        return StackedConv2d(ctx.members, c_in, c_out, kernel, stride, padding, bias)
    return nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=bias)


def flatten_layer(shape: Shape, ctx: BuildContext) -> list[nn.Module]:
    if len(shape) == 1:
        return []
    return [StackedFlatten(ctx.members)] if ctx.members > 1 else [nn.Flatten()]


def flat_size(shape: Shape) -> int:
    return math.prod(shape)


# ----------------------------------------------------------------------------------------------- modules
class Dropout(nn.Module):
    """Book dropout: keep each value with probability keep_prob and scale by 1/keep_prob; identity in eval.

    Draws come from `generator` (set by the trainer), so a run is reproducible and independent of other
    random draws in the process.
    """

    def __init__(self, keep_prob: float):
        super().__init__()
        self.keep_prob = keep_prob
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.keep_prob >= 1.0:
            return x
        return x * keep_mask(x.shape, self.keep_prob, x.device, x.dtype, self.generator) * (1.0 / self.keep_prob)

    def extra_repr(self) -> str:
        return f"keep_prob={self.keep_prob}"


class Noise(nn.Module):
    """Book noise injection: adds normal (or uniform) noise to a training batch with probability `ratio`.

    Identity in evaluation; the gradient passes straight through (d(x + n)/dx = 1).
    """

    def __init__(self, kind: str, mean: float, std: float, low: float, high: float, ratio: float):
        super().__init__()
        self.kind, self.mean, self.std, self.low, self.high, self.ratio = kind, mean, std, low, high, ratio
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.ratio <= 0.0:
            return x
        g = self.generator
        if self.kind == "normal":
            noise = torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=g) * self.std + self.mean
        else:
            noise = torch.rand(x.shape, device=x.device, dtype=x.dtype, generator=g) * (self.high - self.low) + self.low
        if self.ratio < 1.0:  # book: np.random.rand() < ratio decides per batch; a 0/1 factor avoids a host sync
            noise = noise * (torch.rand((), device=x.device, generator=g) < self.ratio).to(x.dtype)
        return x + noise

    def extra_repr(self) -> str:
        spread = f"mean={self.mean}, std={self.std}" if self.kind == "normal" else f"low={self.low}, high={self.high}"
        return f"{self.kind}, {spread}, ratio={self.ratio}"


class BatchNormal(nn.Module):
    """Book batch_normal: per channel (images) or per feature (vectors) over the batch.

    Training uses the batch's mean and (biased) variance and moves the running averages by `exp_ratio`
    (book: mavg += exp_ratio * (avg - mavg)); evaluation uses the running averages. With `rescale`, a
    learnable scale (init 1) and shift (init 0) follow. Unlike the book, the gradient flows through the
    batch mean and variance too (the book's backprop treats them as constants).
    """

    def __init__(self, features: int, epsilon: float, exp_ratio: float, rescale: bool):
        super().__init__()
        self.epsilon, self.exp_ratio = epsilon, exp_ratio
        self.register_buffer("running_mean", torch.zeros(features))
        self.register_buffer("running_var", torch.ones(features))
        self.weight = nn.Parameter(torch.ones(features)) if rescale else None
        self.bias = nn.Parameter(torch.zeros(features)) if rescale else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return F.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.epsilon
            )
        # one fused pass gives the output and the batch statistics (mean, 1/sqrt(var + eps))
        out, mean, invstd = torch.native_batch_norm(x, self.weight, self.bias, None, None, True, 0.0, self.epsilon)
        with torch.no_grad():
            var = invstd.double().pow(-2).sub(self.epsilon).clamp_min(0).to(x.dtype)
            self.running_mean.lerp_(mean, self.exp_ratio)
            self.running_var.lerp_(var, self.exp_ratio)
        return out

    def extra_repr(self) -> str:
        return f"{self.running_mean.numel()}, epsilon={self.epsilon}, exp_ratio={self.exp_ratio}, rescale={self.weight is not None}"


# ----------------------------------------------------------------------------------------------- layer types
@dataclass(frozen=True)
class BatchNormalArgs:
    epsilon: float = 1e-10  # book default
    exp_ratio: float = 0.001  # book: running-average rate
    rescale: bool = True  # book: learnable scale and shift

    def __post_init__(self):
        require(self.epsilon > 0, "epsilon", "must be > 0", self.epsilon)
        require(0 <= self.exp_ratio <= 1, "exp_ratio", "must be in [0, 1]", self.exp_ratio)


def inline_bn(spec: bool | BatchNormalArgs, features: int, ctx: BuildContext) -> list[nn.Module]:
    """`batch_normal: true` (book defaults) or `{epsilon, exp_ratio, rescale}` on a conv/full layer."""
    if spec is False:
        return []
    a = BatchNormalArgs() if spec is True else spec
    return batch_normal(a, (features,), ctx)[0]


def quiet(default: Any) -> Any:
    """An option left out of the resolved layer list while it has its default (keeps config.yaml readable)."""
    return dataclasses.field(default=default, metadata={"quiet": True})


def weight_layer(module: nn.Module, init: InitConfig | None) -> nn.Module:
    """Remember a layer's own init (None: model.init) for `init_weights`."""
    module.init_cfg = init
    return module


@dataclass(frozen=True)
class FullArgs:
    width: int  # output units
    actfunc: Activation | None = None  # null = model.activation (book default relu)
    bias: bool = quiet(True)
    batch_normal: bool | BatchNormalArgs = quiet(False)  # true: Linear → BN → activation (lecture's order)
    init: InitConfig | None = quiet(None)  # null = model.init

    def __post_init__(self):
        require(1 <= self.width <= 10_000_000, "width", "must be between 1 and 10000000", self.width)


@layer("full", FullArgs)
def full(a: FullArgs, shape: Shape, ctx: BuildContext):
    """Fully connected layer (a bare int in the list); flattens image input first."""
    linear = weight_layer(linear_layer(flat_size(shape), a.width, a.bias, ctx), a.init)
    bn = inline_bn(a.batch_normal, a.width, ctx)
    return [*flatten_layer(shape, ctx), linear, *bn, *activation(a.actfunc, ctx)], (a.width,)


@dataclass(frozen=True)
class ConvArgs:
    ksize: int | list[int]  # kernel height/width (book: required)
    chn: int  # output channels (book: required)
    actfunc: Activation | None = None  # null = model.activation (book default relu)
    stride: int | list[int] = 1  # the book's conv has stride 1
    padding: Literal["same", "valid"] | int = quiet("same")  # book: 'same' (output ceil(H / stride))
    bias: bool = quiet(True)
    batch_normal: bool | BatchNormalArgs = quiet(False)  # true: Conv → BN → activation (lecture's order)
    init: InitConfig | None = quiet(None)  # null = model.init

    def __post_init__(self):
        check_pair(self.ksize, "ksize")
        check_pair(self.stride, "stride")
        require(1 <= self.chn <= 100_000, "chn", "must be between 1 and 100000", self.chn)
        require(not isinstance(self.padding, int) or self.padding >= 0, "padding", "must be ≥ 0", self.padding)


def same_padding(size: int, k: int, s: int) -> tuple[int, int]:
    """TF/book 'same': output ceil(size / s); the odd pixel of padding goes to the bottom/right."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


@layer("conv", ConvArgs)
def conv(a: ConvArgs, shape: Shape, ctx: BuildContext):
    """Convolution, 'same' padding by default (book: kernel [kh, kw, in, chn], zero bias)."""
    if len(shape) != 3:
        raise LayerError(f"needs image input (C×H×W), got a vector of {shape[0]}")
    c, h, w = shape
    (kh, kw), (sh, sw) = pair(a.ksize, "ksize"), pair(a.stride, "stride")
    if a.padding == "same":
        (top, bottom), (left, right) = same_padding(h, kh, sh), same_padding(w, kw, sw)
    else:
        top = bottom = left = right = 0 if a.padding == "valid" else a.padding
    oh, ow = (h + top + bottom - kh) // sh + 1, (w + left + right - kw) // sw + 1
    if oh < 1 or ow < 1:
        raise LayerError(f"kernel {kh}×{kw} is larger than the padded input {h + top + bottom}×{w + left + right}")
    mods: list[nn.Module] = []
    if top == bottom and left == right:
        padding: Any = (top, left)
    else:
        mods.append(nn.ZeroPad2d((left, right, top, bottom)))
        padding = 0
    mods.append(weight_layer(conv_layer(c, a.chn, (kh, kw), (sh, sw), padding, a.bias, ctx), a.init))
    return [*mods, *inline_bn(a.batch_normal, a.chn, ctx), *activation(a.actfunc, ctx)], (a.chn, oh, ow)


@dataclass(frozen=True)
class PoolArgs:
    stride: int | list[int]  # window and step (book: the window equals the stride; must divide the input)

    def __post_init__(self):
        check_pair(self.stride, "stride")


def pool(kind: str, a: PoolArgs, shape: Shape, ctx: BuildContext):
    if len(shape) != 3:
        raise LayerError(f"needs image input (C×H×W), got a vector of {shape[0]}")
    c, h, w = shape
    sh, sw = pair(a.stride, "stride")
    if h % sh or w % sw:
        raise LayerError(
            f"stride {sh}×{sw} does not divide the input size {h}×{w} (the book requires it; change the stride "
            f"or the layers before it)"
        )
    module = MaxPool((sh, sw)) if kind == "max" else AvgPool((sh, sw))
    return [module], (c, h // sh, w // sw)


@layer("max", PoolArgs)
def max_pool(a: PoolArgs, shape: Shape, ctx: BuildContext):
    """Max pooling; window = stride."""
    return pool("max", a, shape, ctx)


@layer("avg", PoolArgs)
def avg_pool(a: PoolArgs, shape: Shape, ctx: BuildContext):
    """Average pooling; window = stride."""
    return pool("avg", a, shape, ctx)


@dataclass(frozen=True)
class DropoutArgs:
    keep_prob: float = 1.0  # book default 1.0 (keeps everything); must be in (0, 1]

    def __post_init__(self):
        require(0 < self.keep_prob <= 1, "keep_prob", "must be in (0, 1]", self.keep_prob)


@layer("dropout", DropoutArgs)
def dropout(a: DropoutArgs, shape: Shape, ctx: BuildContext):
    """Dropout: keeps a value with probability keep_prob, scaled by 1/keep_prob; identity in evaluation."""
    if ctx.members > 1:
        return [StackedDropout(ctx.each("keep_prob"))], shape
    return [Dropout(a.keep_prob)], shape


@dataclass(frozen=True)
class NoiseArgs:
    type: Literal["normal", "uniform"] = "normal"  # book supports normal
    mean: float = 0.0  # normal: book default 0
    std: float = 1.0  # normal: book default 1.0
    low: float = -1.0  # uniform
    high: float = 1.0  # uniform
    ratio: float = 1.0  # probability that a training batch gets noise (book default 1.0)

    def __post_init__(self):
        require(self.std >= 0, "std", "must be ≥ 0", self.std)
        require(self.low <= self.high, "high", f"must be ≥ low ({self.low})", self.high)
        require(0 <= self.ratio <= 1, "ratio", "must be in [0, 1]", self.ratio)


@layer("noise", NoiseArgs)
def noise(a: NoiseArgs, shape: Shape, ctx: BuildContext):
    """Noise injection in training (normal or uniform); identity in evaluation."""
    if ctx.members > 1:
        return [StackedNoise(a.type, a.mean, ctx.each("std"), a.low, a.high, a.ratio)], shape
    return [Noise(a.type, a.mean, a.std, a.low, a.high, a.ratio)], shape


@layer("batch_normal", BatchNormalArgs)
def batch_normal(a: BatchNormalArgs, shape: Shape, ctx: BuildContext):
    """Batch normalization per channel (images) or feature (vectors); running averages in evaluation."""
    if ctx.members > 1:
        return [StackedBatchNormal(ctx.members, shape[0], a.epsilon, a.exp_ratio, a.rescale)], shape
    return [BatchNormal(shape[0], a.epsilon, a.exp_ratio, a.rescale)], shape


@dataclass(frozen=True)
class ActivationArgs:
    actfunc: Activation = "relu"


@layer("activation", ActivationArgs)
def activation_layer(a: ActivationArgs, shape: Shape, ctx: BuildContext):
    """An explicit activation (for Conv → BN → activation written as three layers)."""
    return activation(a.actfunc, ctx), shape


@dataclass(frozen=True)
class NoArgs:
    pass


@layer("flatten", NoArgs)
def flatten(a: NoArgs, shape: Shape, ctx: BuildContext):
    """An explicit flatten (it is implicit before a full layer)."""
    return flatten_layer(shape, ctx), (flat_size(shape),)


# ----------------------------------------------------------------------------------------------- blocks
class Residual(nn.Module):
    """y = f(x) + x, or f(x) + proj(x) (a 1×1 conv or a full layer, no bias) when the shapes differ."""

    def __init__(self, body: nn.Module, proj: nn.Module | None):
        super().__init__()
        self.body, self.proj = body, proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + (x if self.proj is None else self.proj(x))


class Parallel(nn.Module):
    """Branches applied to the same input, concatenated along channels (inception-style)."""

    def __init__(self, branches: list[nn.Module]):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.branches], dim=1)


@dataclass(frozen=True)
class SerialArgs:
    layers: list[Any]  # a layer list
    repeat: int = 1  # build it this many times in a row (each with its own parameters)

    def __post_init__(self):
        require(1 <= self.repeat <= 1000, "repeat", "must be between 1 and 1000", self.repeat)


@layer("serial", SerialArgs)
def serial(a: SerialArgs, shape: Shape, ctx: BuildContext):
    """A layer list, repeated `repeat` times."""
    mods: list[nn.Module] = []
    for _ in range(a.repeat):
        body, shape = build_nested(a, lambda v: v.layers, shape, ctx, ctx.path + ".layers")
        mods += body
    return mods, shape


@dataclass(frozen=True)
class ResidualArgs:
    layers: list[Any]  # the residual branch f


@layer("residual", ResidualArgs)
def residual(a: ResidualArgs, shape: Shape, ctx: BuildContext):
    """Adds the block's input to its output, with a 1×1 projection when the shapes differ."""
    body, out = build_nested(a, lambda v: v.layers, shape, ctx, ctx.path + ".layers")
    proj: nn.Module | None = None
    if out != shape:
        if len(out) != len(shape):
            raise LayerError(f"the block turns {shape} into {out}; a residual needs both images or both vectors")
        if len(shape) == 1:
            proj = weight_layer(linear_layer(shape[0], out[0], False, ctx), None)
        else:
            sh, sw = shape[1] // out[1], shape[2] // out[2]
            if sh * out[1] != shape[1] or sw * out[2] != shape[2]:
                raise LayerError(
                    f"the block's output {out[1]}×{out[2]} does not divide its input {shape[1]}×{shape[2]}"
                )
            proj = weight_layer(conv_layer(shape[0], out[0], (1, 1), (sh, sw), 0, False, ctx), None)
    return [Residual(nn.Sequential(*body), proj)], out


@dataclass(frozen=True)
class ParallelArgs:
    branches: list[list[Any]]  # layer lists applied to the same input; [] passes the input through


@layer("parallel", ParallelArgs)
def parallel(a: ParallelArgs, shape: Shape, ctx: BuildContext):
    """Branches on the same input, outputs concatenated along channels (features for vectors)."""
    branches, outs = [], []
    for i in range(len(a.branches)):
        body, out = build_nested(a, lambda v, i=i: v.branches[i], shape, ctx, f"{ctx.path}.branches[{i}]")
        branches.append(nn.Sequential(*body))
        outs.append(out)
    if len({o[1:] for o in outs}) > 1 or len({len(o) for o in outs}) > 1:
        raise LayerError(f"branch outputs {' | '.join('×'.join(map(str, o)) for o in outs)} differ beyond channels")
    module = StackedParallel(ctx.members, branches) if ctx.members > 1 else Parallel(branches)
    return [module], (sum(o[0] for o in outs), *outs[0][1:])


def build_nested(a: Any, get: Callable[[Any], list[Any]], shape: Shape, ctx: BuildContext, path: str):
    """Build a block's nested layer list (`get` picks it from the block's arguments), per member if stacked."""
    variants = [parse_layers(get(v), path) for v in ctx.variants] if ctx.variants else None
    return build_list(parse_layers(get(a), path), shape, ctx, path, variants)


BLOCK_LISTS = {"serial": "layers", "residual": "layers"}  # block types holding one nested layer list


# ----------------------------------------------------------------------------------------------- layer lists
@dataclass(frozen=True)
class LayerSpec:
    type: str
    args: Any  # the type's argument dataclass


def parse_layer(entry: Any, path: str) -> LayerSpec:
    """One layer list entry → LayerSpec (nested block lists normalized too); ConfigError naming `path`."""
    if isinstance(entry, int) and not isinstance(entry, bool):
        entry = ["full", {"width": entry}]
    if not isinstance(entry, (list, tuple)) or not 1 <= len(entry) <= 2 or not isinstance(entry[0], str):
        raise ConfigError(
            f"expected an int (full layer width) or [type] / [type, {{params}}], got {describe(entry)}", path=path
        )
    name = entry[0]
    if name not in LAYERS:
        raise ConfigError(LAYERS.unknown(name), path=path)
    params = entry[1] if len(entry) == 2 else {}
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ConfigError(f"{name}: expected a mapping of parameters, got {describe(params)}", path=path)
    try:
        args = parse(LAYERS[name].args, params, path)
    except ConfigError as e:
        raise ConfigError(f"{e.detail} (layer '{name}')", path=e.path) from None
    if name in BLOCK_LISTS:
        key = BLOCK_LISTS[name]
        args = dataclasses.replace(args, **{key: normalize_layers(getattr(args, key), f"{path}.{key}")})
    if name == "parallel":
        branches = [normalize_layers(b, f"{path}.branches[{i}]") for i, b in enumerate(args.branches)]
        require_branches(branches, path)
        args = dataclasses.replace(args, branches=branches)
    return LayerSpec(name, args)


def require_branches(branches: list[list[Any]], path: str) -> None:
    if not branches:
        raise ConfigError("needs at least one branch", path=f"{path}.branches")


def parse_layers(raw: Any, path: str = "model.layers") -> list[LayerSpec]:
    if not isinstance(raw, (list, tuple)):
        raise ConfigError(f"expected a list of layers, got {describe(raw)}", path=path)
    return [parse_layer(entry, f"{path}[{i}]") for i, entry in enumerate(raw)]


def spec_to_plain(spec: LayerSpec) -> list[Any]:
    """`[type, {params}]` with defaults filled in; params left null (inherit a model default) are omitted."""
    params = {}
    for f in dataclasses.fields(spec.args):
        value = getattr(spec.args, f.name)
        if value is None or (f.metadata.get("quiet") and value == f.default):
            continue
        params[f.name] = to_plain(value)
    return [spec.type, params] if params else [spec.type]


def normalize_layers(raw: Any, path: str = "model.layers") -> list[Any]:
    """Validate a layer list and return it in the explicit form stored in the resolved config."""
    return [spec_to_plain(s) for s in parse_layers(raw, path)]


@dataclass(frozen=True)
class Built:
    """One built layer: its modules, output shape and book-style text (for `regbench show`)."""

    text: str
    mods: list[nn.Module]
    shape: Shape


def build_list(
    specs: list[LayerSpec], shape: Shape, ctx: BuildContext, path: str, variants: list[list[LayerSpec]] | None = None
) -> tuple[list[nn.Module], Shape]:
    """Build a layer list in order, each layer's input shape being the previous one's output.

    `variants` holds every member's own list when building K stacked members (they differ only in values
    such as keep_prob). Returns one nn.Sequential per entry and the final shape; a layer that does not
    fit raises ConfigError naming `path[i]`.
    """
    out = []
    for i, spec in enumerate(specs):
        member_specs = [v[i] for v in variants] if variants else None
        mods, shape = build_one(spec, shape, ctx, f"{path}[{i}]", member_specs)
        out.append(nn.Sequential(*mods))
    return out, shape


def build_one(
    spec: LayerSpec, shape: Shape, ctx: BuildContext, path: str, variants: list[LayerSpec] | None = None
) -> tuple[list[nn.Module], Shape]:
    own = dataclasses.replace(ctx, path=path, variants=tuple(v.args for v in variants) if variants else None)
    try:
        return LAYERS[spec.type].build(spec.args, shape, own)
    except LayerError as e:
        raise ConfigError(f"{spec.type}: {e}", path=path) from None


def describe_spec(spec: LayerSpec) -> str:
    """Short book-style text of a layer for tables: `conv(3,6)`, `max(2)`, `dropout(0.6)`, `30`."""
    a = spec.args
    if spec.type in ("full", "conv"):
        extra = [x for x in (a.actfunc, "bn" if a.batch_normal else None) if x]
        if spec.type == "full":
            return str(a.width) + (f"({','.join(extra)})" if extra else "")
        k = a.ksize if isinstance(a.ksize, int) else "x".join(map(str, a.ksize))
        return f"conv({','.join(map(str, [k, a.chn, *extra]))})"
    if spec.type in ("max", "avg"):
        s = a.stride if isinstance(a.stride, int) else "x".join(map(str, a.stride))
        return f"{spec.type}({s})"
    if spec.type == "dropout":
        return f"dropout({a.keep_prob:g})"
    if spec.type == "noise":
        return f"noise({a.type} std={a.std:g})" if a.type == "normal" else f"noise(uniform {a.low:g}..{a.high:g})"
    if spec.type == "activation":
        return a.actfunc
    if spec.type in ("serial", "residual"):
        inner = "-".join(describe_spec(s) for s in parse_layers(a.layers))
        times = f"×{a.repeat}" if spec.type == "serial" and a.repeat > 1 else ""
        return f"{spec.type}{times}[{inner}]"
    if spec.type == "parallel":
        return (
            "parallel["
            + " | ".join("-".join(describe_spec(s) for s in parse_layers(b)) or "id" for b in a.branches)
            + "]"
        )
    return spec.type
