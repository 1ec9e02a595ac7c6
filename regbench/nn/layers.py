"""The book's plain layer types: one argument dataclass (book names and defaults) and one small build
function each, registered beside its K-member (stacked) build function.

Full and conv layers are built once from a `Kit` of module constructors: `PLAIN` (torch's modules) for
one model, `stacked_kit(k)` (regbench.stacked.layers) for K members side by side. The block types are in
`blocks`, parsing the layer list in `spec` (re-exported here for its importers).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from ..config import Activation, InitConfig
from ..core.schema import only_when, require
from ..stacked.layers import (
    StackedBatchNormal,
    StackedConv2d,
    StackedDropout,
    StackedFlatten,
    StackedLinear,
    StackedNoise,
)
from .modules import BatchNormal, Dropout, Noise
from .pooling import AvgPool, MaxPool
from .registry import LAYERS, BuildContext, LayerError, Shape, layer  # noqa: F401  (LAYERS re-exported)
from .spec import BLOCK_LISTS, describe_spec, normalize_layers, parse_layers  # noqa: F401  (re-exported)


# ----------------------------------------------------------------------------------------------- helpers
def pair(v: int | list[int], field: str) -> tuple[int, int]:
    """Book's get_conf_param_2d: an int means the same value for height and width."""
    if isinstance(v, int):
        return v, v
    require(len(v) == 2, field, "must be an int or a list [h, w]", v)
    return v[0], v[1]


def check_pair(v: int | list[int], field: str, low: int = 1) -> None:
    h, w = pair(v, field)
    require(h >= low and w >= low, field, f"must be ≥ {low}", v)


def quiet(default: Any) -> Any:
    """An option left out of the resolved layer list while it has its default (keeps config.yaml readable)."""
    return dataclasses.field(default=default, metadata={"quiet": True})


def weight_layer(module: nn.Module, init: InitConfig | None) -> nn.Module:
    """Remember a layer's own init (None: model.init) for `init_weights`."""
    module.init_cfg = init
    return module


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


def flat_size(shape: Shape) -> int:
    return math.prod(shape)


def needs_image(shape: Shape) -> None:
    if len(shape) != 3:
        raise LayerError(f"needs image input (C×H×W), got a vector of {shape[0]}")


@dataclass(frozen=True)
class BatchNormalArgs:
    epsilon: float = 1e-10  # book default
    exp_ratio: float = 0.001  # book: running-average rate
    rescale: bool = True  # book: learnable scale and shift

    def __post_init__(self):
        require(self.epsilon > 0, "epsilon", "must be > 0", self.epsilon)
        require(0 <= self.exp_ratio <= 1, "exp_ratio", "must be in [0, 1]", self.exp_ratio)


# ----------------------------------------------------------------------------------------------- kits
@dataclass(frozen=True)
class Kit:
    """The modules whose one-model and K-member versions differ (same parameter names, leading K dim)."""

    linear: Callable[[int, int, bool], nn.Module]  # (n_in, n_out, bias)
    conv: Callable[..., nn.Module]  # (c_in, c_out, kernel, stride, padding, bias)
    batch_normal: Callable[[int, BatchNormalArgs], nn.Module]  # (features, args)
    flatten: Callable[[], nn.Module]


def plain_conv(c_in: int, c_out: int, kernel: tuple[int, int], stride, padding, bias: bool) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=bias)


PLAIN = Kit(
    linear=lambda n_in, n_out, bias: nn.Linear(n_in, n_out, bias=bias),
    conv=plain_conv,
    batch_normal=lambda n, a: BatchNormal(n, a.epsilon, a.exp_ratio, a.rescale),
    flatten=nn.Flatten,
)


def stacked_kit(k: int) -> Kit:
    """The K-member modules of regbench.stacked.layers."""
    return Kit(
        linear=lambda n_in, n_out, bias: StackedLinear(k, n_in, n_out, bias),
        conv=lambda *args: StackedConv2d(k, *args),
        batch_normal=lambda n, a: StackedBatchNormal(k, n, a.epsilon, a.exp_ratio, a.rescale),
        flatten=lambda: StackedFlatten(k),
    )


def flatten_modules(shape: Shape, kit: Kit) -> list[nn.Module]:
    return [] if len(shape) == 1 else [kit.flatten()]


def inline_bn(spec: bool | BatchNormalArgs, features: int, kit: Kit) -> list[nn.Module]:
    """`batch_normal: true` (book defaults) or `{epsilon, exp_ratio, rescale}` on a conv/full layer."""
    if spec is False:
        return []
    return [kit.batch_normal(features, BatchNormalArgs() if spec is True else spec)]


# ----------------------------------------------------------------------------------------------- full
@dataclass(frozen=True)
class FullArgs:
    width: int  # output units
    actfunc: Activation | None = None  # null = model.activation (book default relu)
    bias: bool = quiet(True)
    batch_normal: bool | BatchNormalArgs = quiet(False)  # true: Linear → BN → activation (lecture's order)
    init: InitConfig | None = quiet(None)  # null = model.init

    def __post_init__(self):
        require(1 <= self.width <= 10_000_000, "width", "must be between 1 and 10000000", self.width)


def full_layer(a: FullArgs, shape: Shape, ctx: BuildContext, kit: Kit):
    linear = weight_layer(kit.linear(flat_size(shape), a.width, a.bias), a.init)
    bn = inline_bn(a.batch_normal, a.width, kit)
    return [*flatten_modules(shape, kit), linear, *bn, *activation(a.actfunc, ctx)], (a.width,)


@layer("full", FullArgs)
def full(a: FullArgs, shape: Shape, ctx: BuildContext):
    """Fully connected layer (a bare int in the list); flattens image input first."""
    return full_layer(a, shape, ctx, PLAIN)


@full.stacked
def stacked_full(a: FullArgs, shape: Shape, ctx: BuildContext):
    return full_layer(a, shape, ctx, stacked_kit(ctx.members))


# ----------------------------------------------------------------------------------------------- conv
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


def conv_layer(a: ConvArgs, shape: Shape, ctx: BuildContext, kit: Kit):
    needs_image(shape)
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
    else:  # uneven 'same' padding: an explicit pad, as the conv pads both sides equally
        mods.append(nn.ZeroPad2d((left, right, top, bottom)))
        padding = 0
    mods.append(weight_layer(kit.conv(c, a.chn, (kh, kw), (sh, sw), padding, a.bias), a.init))
    return [*mods, *inline_bn(a.batch_normal, a.chn, kit), *activation(a.actfunc, ctx)], (a.chn, oh, ow)


@layer("conv", ConvArgs)
def conv(a: ConvArgs, shape: Shape, ctx: BuildContext):
    """Convolution, 'same' padding by default (book: kernel [kh, kw, in, chn], zero bias)."""
    return conv_layer(a, shape, ctx, PLAIN)


@conv.stacked
def stacked_conv(a: ConvArgs, shape: Shape, ctx: BuildContext):
    return conv_layer(a, shape, ctx, stacked_kit(ctx.members))


# ----------------------------------------------------------------------------------------------- pools
@dataclass(frozen=True)
class PoolArgs:
    stride: int | list[int]  # window and step (book: the window equals the stride; must divide the input)

    def __post_init__(self):
        check_pair(self.stride, "stride")


def pool(module: type[nn.Module], a: PoolArgs, shape: Shape):
    needs_image(shape)
    c, h, w = shape
    sh, sw = pair(a.stride, "stride")
    if h % sh or w % sw:
        raise LayerError(
            f"stride {sh}×{sw} does not divide the input size {h}×{w} (the book requires it; change the stride "
            f"or the layers before it)"
        )
    return [module((sh, sw))], (c, h // sh, w // sw)


# pools act per channel, so the stacked layout (member k owns channel block k) needs nothing of its own
@layer("max", PoolArgs, per_member=True)
def max_pool(a: PoolArgs, shape: Shape, ctx: BuildContext):
    """Max pooling; window = stride."""
    return pool(MaxPool, a, shape)


@layer("avg", PoolArgs, per_member=True)
def avg_pool(a: PoolArgs, shape: Shape, ctx: BuildContext):
    """Average pooling; window = stride."""
    return pool(AvgPool, a, shape)


# ----------------------------------------------------------------------------------------------- regularizers
@dataclass(frozen=True)
class DropoutArgs:
    keep_prob: float = 1.0  # book default 1.0 (keeps everything); must be in (0, 1]
    # where the 1/keep_prob correction goes: `train` scales kept values up in training (the book's, inverted
    # dropout); `eval` multiplies by keep_prob in evaluation ("Deep Learning from Scratch", non-inverted)
    scale: Literal["train", "eval"] = "train"

    def __post_init__(self):
        require(0 < self.keep_prob <= 1, "keep_prob", "must be in (0, 1]", self.keep_prob)


@layer("dropout", DropoutArgs)
def dropout(a: DropoutArgs, shape: Shape, ctx: BuildContext):
    """Dropout: keeps a value with probability keep_prob, scaled by 1/keep_prob; identity in evaluation
    (`scale: eval`: unscaled in training, × keep_prob in evaluation)."""
    return [Dropout(a.keep_prob, a.scale)], shape


@dropout.stacked
def stacked_dropout(a: DropoutArgs, shape: Shape, ctx: BuildContext):
    return [StackedDropout(ctx.each("keep_prob"), a.scale)], shape  # scale is in the stack key: one for all


@dataclass(frozen=True)
class NoiseArgs:
    type: Literal["normal", "uniform"] = "normal"  # book supports normal
    mean: float = only_when(0.0, "type", "normal")  # normal: book default 0
    std: float = only_when(1.0, "type", "normal")  # normal: book default 1.0
    low: float = only_when(-1.0, "type", "uniform")  # uniform
    high: float = only_when(1.0, "type", "uniform")  # uniform
    ratio: float = 1.0  # probability that a training batch gets noise (book default 1.0)

    def __post_init__(self):
        require(self.std >= 0, "std", "must be ≥ 0", self.std)
        require(self.low <= self.high, "high", f"must be ≥ low ({self.low})", self.high)
        require(0 <= self.ratio <= 1, "ratio", "must be in [0, 1]", self.ratio)


@layer("noise", NoiseArgs)
def noise(a: NoiseArgs, shape: Shape, ctx: BuildContext):
    """Noise injection in training (normal or uniform); identity in evaluation."""
    return [Noise(a.type, a.mean, a.std, a.low, a.high, a.ratio)], shape


@noise.stacked
def stacked_noise(a: NoiseArgs, shape: Shape, ctx: BuildContext):
    return [StackedNoise(a.type, a.mean, ctx.each("std"), a.low, a.high, a.ratio)], shape


@layer("batch_normal", BatchNormalArgs)
def batch_normal(a: BatchNormalArgs, shape: Shape, ctx: BuildContext):
    """Batch normalization per channel (images) or feature (vectors); running averages in evaluation."""
    return [PLAIN.batch_normal(shape[0], a)], shape


@batch_normal.stacked
def stacked_batch_normal(a: BatchNormalArgs, shape: Shape, ctx: BuildContext):
    return [stacked_kit(ctx.members).batch_normal(shape[0], a)], shape


# ----------------------------------------------------------------------------------------------- shape
@dataclass(frozen=True)
class ActivationArgs:
    actfunc: Activation = "relu"


# activations act per element, on either layout
@layer("activation", ActivationArgs, per_member=True)
def activation_layer(a: ActivationArgs, shape: Shape, ctx: BuildContext):
    """An explicit activation (for Conv → BN → activation written as three layers)."""
    return activation(a.actfunc, ctx), shape


@dataclass(frozen=True)
class NoArgs:
    pass


@layer("flatten", NoArgs)
def flatten(a: NoArgs, shape: Shape, ctx: BuildContext):
    """An explicit flatten (it is implicit before a full layer)."""
    return flatten_modules(shape, PLAIN), (flat_size(shape),)


@flatten.stacked
def stacked_flatten(a: NoArgs, shape: Shape, ctx: BuildContext):
    return flatten_modules(shape, stacked_kit(ctx.members)), (flat_size(shape),)
