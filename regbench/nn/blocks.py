"""The book's block layer types: serial (a nested list, repeated), residual and parallel (inception-style).

A block builds its nested layer lists with the same loop as the model (`registry.build_layers`), so each
nested layer gets its plain or stacked variant as the model does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..core.schema import require
from ..stacked.layers import StackedParallel
from .layers import PLAIN, Kit, stacked_kit, weight_layer
from .registry import BuildContext, LayerError, Shape, build_layers, layer
from .spec import parse_layers


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


def build_nested(
    a: Any, get: Callable[[Any], list[Any]], shape: Shape, ctx: BuildContext, path: str
) -> tuple[list[nn.Module], Shape]:
    """Build a block's nested layer list (`get` picks it from the block's arguments), per member if stacked.

    Returns one nn.Sequential per entry and the list's output shape (the input's for an empty list)."""
    variants = [parse_layers(get(v), path) for v in ctx.variants] if ctx.variants else None
    built = build_layers(parse_layers(get(a), path), shape, ctx, path, variants)
    return [mod for mod, _ in built], built[-1][1] if built else shape


@dataclass(frozen=True)
class SerialArgs:
    layers: list[Any]  # a layer list
    repeat: int = 1  # build it this many times in a row (each with its own parameters)

    def __post_init__(self):
        require(1 <= self.repeat <= 1000, "repeat", "must be between 1 and 1000", self.repeat)


# the nested layers pick their own stacked variants, so one builder serves both
@layer("serial", SerialArgs, per_member=True)
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


def residual_block(a: ResidualArgs, shape: Shape, ctx: BuildContext, kit: Kit):
    body, out = build_nested(a, lambda v: v.layers, shape, ctx, ctx.path + ".layers")
    proj: nn.Module | None = None
    if out != shape:
        if len(out) != len(shape):
            raise LayerError(f"the block turns {shape} into {out}; a residual needs both images or both vectors")
        if len(shape) == 1:
            proj = weight_layer(kit.linear(shape[0], out[0], False), None)
        else:
            sh, sw = shape[1] // out[1], shape[2] // out[2]
            if sh * out[1] != shape[1] or sw * out[2] != shape[2]:
                raise LayerError(
                    f"the block's output {out[1]}×{out[2]} does not divide its input {shape[1]}×{shape[2]}"
                )
            proj = weight_layer(kit.conv(shape[0], out[0], (1, 1), (sh, sw), 0, False), None)
    return [Residual(nn.Sequential(*body), proj)], out


@layer("residual", ResidualArgs)
def residual(a: ResidualArgs, shape: Shape, ctx: BuildContext):
    """Adds the block's input to its output, with a 1×1 projection when the shapes differ."""
    return residual_block(a, shape, ctx, PLAIN)


@residual.stacked
def stacked_residual(a: ResidualArgs, shape: Shape, ctx: BuildContext):
    return residual_block(a, shape, ctx, stacked_kit(ctx.members))


@dataclass(frozen=True)
class ParallelArgs:
    branches: list[list[Any]]  # layer lists applied to the same input; [] passes the input through


def parallel_branches(a: ParallelArgs, shape: Shape, ctx: BuildContext) -> tuple[list[nn.Module], Shape]:
    """Each branch as one nn.Sequential, and the concatenated output shape."""
    branches, outs = [], []
    for i in range(len(a.branches)):
        body, out = build_nested(a, lambda v, i=i: v.branches[i], shape, ctx, f"{ctx.path}.branches[{i}]")
        branches.append(nn.Sequential(*body))
        outs.append(out)
    if len({o[1:] for o in outs}) > 1 or len({len(o) for o in outs}) > 1:
        raise LayerError(f"branch outputs {' | '.join('×'.join(map(str, o)) for o in outs)} differ beyond channels")
    return branches, (sum(o[0] for o in outs), *outs[0][1:])


@layer("parallel", ParallelArgs)
def parallel(a: ParallelArgs, shape: Shape, ctx: BuildContext):
    """Branches on the same input, outputs concatenated along channels (features for vectors)."""
    branches, out = parallel_branches(a, shape, ctx)
    return [Parallel(branches)], out


@parallel.stacked
def stacked_parallel(a: ParallelArgs, shape: Shape, ctx: BuildContext):
    branches, out = parallel_branches(a, shape, ctx)
    return [StackedParallel(ctx.members, branches)], out
