"""The layer-type registry and the one build loop.

Each layer type registers its argument dataclass (book names and defaults) and two build functions: `build`
for an ordinary model and `stacked` for K same-shaped models side by side (regbench.stacked). A build
function takes its arguments, the incoming shape — `(C, H, W)` for images, `(F,)` for vectors — and the
build context, and returns `(modules, out_shape)`, so in-channels and the flatten before a full layer are
inferred, never written down. `build_one` is the only place that picks the plain or the stacked variant.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..core.errors import ConfigError
from ..core.registry import Registry

Shape = tuple[int, ...]


class LayerError(ValueError):
    """A layer that does not fit its input shape; the builder adds the layer's index and type."""


@dataclass(frozen=True)
class BuildContext:
    """What a build function needs beside its arguments and input shape."""

    activation: str = "relu"  # model.activation, the default actfunc
    members: int = 1  # K same-shaped models side by side
    path: str = "model.layers"  # key path of the layer being built, for errors in nested blocks
    variants: tuple[Any, ...] | None = None  # stacked: the K members' arguments of the layer being built

    def each(self, name: str) -> list[Any]:
        """A parameter's value for every member (stacked mode)."""
        return [getattr(v, name) for v in self.variants or ()]


Builder = Callable[[Any, Shape, BuildContext], tuple[list[nn.Module], Shape]]


@dataclass
class LayerType:
    """A registered layer type: its parameters, its one-model builder and its K-member builder."""

    name: str
    args: type  # frozen dataclass of the layer's parameters
    build: Builder  # one model
    doc: str
    stacked_build: Builder | None = None  # K members side by side (set by `.stacked`)

    def stacked(self, fn: Builder) -> Builder:
        """Decorator: register `fn` as this type's K-member build function."""
        if self.stacked_build is not None:
            raise ValueError(f"layer type '{self.name}' has a stacked builder already")  # a bug in regbench
        self.stacked_build = fn
        return fn

    def builder(self, members: int) -> Builder:
        """The build function for `members` models side by side."""
        if members <= 1:
            return self.build
        if self.stacked_build is None:
            raise ConfigError(f"layer type '{self.name}' cannot be built for {members} models side by side")
        return self.stacked_build


LAYERS: Registry[LayerType] = Registry("layer type")


def layer(name: str, args: type, *, per_member: bool = False) -> Callable[[Builder], LayerType]:
    """Register the decorated function as the build function of layer type `name` (parameters `args`).

    Returns the LayerType, whose `.stacked` decorator registers the K-member builder. `per_member`: the
    plain builder's modules already act per member on the stacked layout (per channel or element, no
    parameters), so it serves the stacked model too.
    """

    def deco(fn: Builder) -> LayerType:
        kind = LayerType(name, args, fn, (fn.__doc__ or "").strip().splitlines()[0])
        if per_member:
            kind.stacked(fn)
        return LAYERS.add(name, kind)

    return deco


@dataclass(frozen=True)
class LayerSpec:
    """One parsed layer list entry (regbench.nn.spec.parse_layer)."""

    type: str
    args: Any  # the type's argument dataclass


def build_one(
    spec: LayerSpec, shape: Shape, ctx: BuildContext, path: str, variants: list[LayerSpec] | None = None
) -> tuple[list[nn.Module], Shape]:
    """Build one layer with the registered plain or stacked builder; ConfigError naming `path` if it does not fit."""
    own = dataclasses.replace(ctx, path=path, variants=tuple(v.args for v in variants) if variants else None)
    try:
        return LAYERS[spec.type].builder(ctx.members)(spec.args, shape, own)
    except LayerError as e:
        raise ConfigError(f"{spec.type}: {e}", path=path) from None


def build_layers(
    specs: list[LayerSpec], shape: Shape, ctx: BuildContext, path: str, variants: list[list[LayerSpec]] | None = None
) -> list[tuple[nn.Sequential, Shape]]:
    """Build a layer list in order, each layer's input shape being the previous one's output.

    `variants` holds every member's own list when building K stacked members (they differ only in values
    such as keep_prob). Returns one (nn.Sequential, output shape) per entry; a layer that does not fit
    raises ConfigError naming `path[i]`.
    """
    out = []
    for i, spec in enumerate(specs):
        mods, shape = build_one(spec, shape, ctx, f"{path}[{i}]", [v[i] for v in variants] if variants else None)
        out.append((nn.Sequential(*mods), shape))
    return out
