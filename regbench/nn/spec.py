"""The book's layer list as written: parsing, validation, the normalised form kept in config.yaml, and the
short book-style text of each layer.

A layer list entry is an int (a fully connected layer of that width) or `[type]` / `[type, {params}]`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..core.errors import ConfigError
from ..core.schema import applies, describe, parse, to_plain
from .registry import LAYERS, LayerSpec

BLOCK_LISTS = {"serial": "layers", "residual": "layers"}  # block types holding one nested layer list


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
        if not branches:
            raise ConfigError("needs at least one branch", path=f"{path}.branches")
        args = dataclasses.replace(args, branches=branches)
    return LayerSpec(name, args)


def parse_layers(raw: Any, path: str = "model.layers") -> list[LayerSpec]:
    """A layer list → one LayerSpec per entry; ConfigError naming the entry's `path[i]`."""
    if not isinstance(raw, (list, tuple)):
        raise ConfigError(f"expected a list of layers, got {describe(raw)}", path=path)
    return [parse_layer(entry, f"{path}[{i}]") for i, entry in enumerate(raw)]


def spec_to_plain(spec: LayerSpec) -> list[Any]:
    """`[type, {params}]` with defaults filled in; params left null (inherit a model default) are omitted."""
    params = {}
    for f in dataclasses.fields(spec.args):
        value = getattr(spec.args, f.name)
        if value is None or (f.metadata.get("quiet") and value == f.default) or not applies(spec.args, f):
            continue
        params[f.name] = to_plain(value)
    return [spec.type, params] if params else [spec.type]


def normalize_layers(raw: Any, path: str = "model.layers") -> list[Any]:
    """Validate a layer list and return it in the explicit form stored in the resolved config."""
    return [spec_to_plain(s) for s in parse_layers(raw, path)]


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
        return f"dropout({a.keep_prob:g}{', eval' if a.scale == 'eval' else ''})"
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
