"""Reading a layer list as a run's resolved config stores it, nested blocks included, without building it.

Pure Python (no torch), so readers of run directories — `compare`'s model and regularizer columns,
`regbench show` — can describe a model without loading one.

A layer list entry is an int (a full layer of that width) or `[type]` / `[type, {params}]`. The blocks
`serial` and `residual` hold one nested list under `layers`; `parallel` holds one per branch under
`branches` (an empty branch passes its input through). `walk` yields every layer in order, a block before
its contents, each with its path in the config:

    >>> [(e.path, e.text) for e in walk([["serial", {"layers": [["dropout", {"keep_prob": 0.5}]]}], 10])]
    [('model.layers[0]', 'serial[dropout(0.5)]'), ('model.layers[0].layers[0]', 'dropout(0.5)'), ('model.layers[1]', '10')]

A malformed entry (a hand-edited config) raises ConfigError naming its path; a layer type this module does
not know is described by its name.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..core.errors import ConfigError

# the blocks' nested lists, as nn.layers builds them (that module imports torch, so they are named here too)
BLOCK_LISTS = {"serial": "layers", "residual": "layers"}  # one nested layer list
BRANCH_LISTS = {"parallel": "branches"}  # a list of layer lists
REGULARIZER_LAYERS = ("dropout", "noise", "batch_normal")  # layer types that regularize (in compare's column)
REQUIRED: Any = object()  # `LayerEntry.param`'s default: the parameter has no default


@dataclass(frozen=True)
class LayerEntry:
    """One entry of a layer list: where it is, its type and its parameters as stored.

    `path` is the entry's key in the config (`model.layers[2]`, `model.layers[2].layers[0]`,
    `model.layers[3].branches[1][0]`); `depth` is 0 in the top-level list, 1 inside one block, and so on.
    A bare int is read as `full` with `{"width": n}`.
    """

    path: str
    type: str
    params: dict[str, Any]
    depth: int = 0

    @property
    def is_block(self) -> bool:
        """Whether the layer holds nested layer lists (serial, residual, parallel)."""
        return self.type in BLOCK_LISTS or self.type in BRANCH_LISTS

    def nested(self) -> list[list[LayerEntry]]:
        """The block's nested lists, each as its entries one level down: one list for serial and residual,
        one per branch for parallel, none for a plain layer. Raises ConfigError for a malformed list."""
        if self.type in BLOCK_LISTS:
            key = BLOCK_LISTS[self.type]
            return [entries(self.param(key), f"{self.path}.{key}", self.depth + 1)]
        if self.type in BRANCH_LISTS:
            key = BRANCH_LISTS[self.type]
            branches = self.param(key)
            if not isinstance(branches, list):
                got = type(branches).__name__
                raise ConfigError(f"{self.type}: expected a list of layer lists, got {got}", path=f"{self.path}.{key}")
            return [entries(b, f"{self.path}.{key}[{i}]", self.depth + 1) for i, b in enumerate(branches)]
        return []

    @property
    def text(self) -> str:
        """Short book-style text: `conv(3,6)`, `max(2)`, `dropout(0.6)`, `30`, `serial×2[conv(3,4)-max(2)]`."""
        return layer_text(self)

    def param(self, key: str, default: Any = REQUIRED) -> Any:
        """A parameter's stored value, else `default`; ConfigError naming the path for a missing required one."""
        if key in self.params:
            return self.params[key]
        if default is REQUIRED:
            raise ConfigError(f"{self.type}: missing '{key}'", path=self.path)
        return default


def read_entry(entry: Any, path: str, depth: int = 0) -> LayerEntry:
    """One layer list entry as a LayerEntry; ConfigError naming `path` when it is neither an int nor
    `[type]` / `[type, {params}]`."""
    if isinstance(entry, int) and not isinstance(entry, bool):
        return LayerEntry(path, "full", {"width": entry}, depth)
    if isinstance(entry, (list, tuple)) and 1 <= len(entry) <= 2 and isinstance(entry[0], str):
        params = entry[1] if len(entry) == 2 and entry[1] is not None else {}
        if isinstance(params, dict):
            return LayerEntry(path, entry[0], params, depth)
    raise ConfigError(f"expected an int (full layer width) or [type] / [type, {{params}}], got {entry!r}", path=path)


def entries(layers: Any, path: str = "model.layers", depth: int = 0) -> list[LayerEntry]:
    """The entries of one layer list (nested blocks not opened); ConfigError if it is not a list of entries."""
    if not isinstance(layers, (list, tuple)):
        raise ConfigError(f"expected a list of layers, got {type(layers).__name__}", path=path)
    return [read_entry(e, f"{path}[{i}]", depth) for i, e in enumerate(layers)]


def walk(layers: Any, path: str = "model.layers", depth: int = 0) -> Iterator[LayerEntry]:
    """Every layer of `layers` in order, nested ones included: a block comes before its contents, a
    parallel block's branches one after the other. `path` names the list (its entries get `path[i]`).

    A malformed entry raises ConfigError when the walk enters the list holding it.
    """
    yield from _walk(entries(layers, path, depth))


def _walk(items: list[LayerEntry]) -> Iterator[LayerEntry]:
    for entry in items:
        yield entry
        for nested in entry.nested():
            yield from _walk(nested)


def config_layers(config: Any) -> Any:
    """`model.layers` of a plain config mapping (a run's config.yaml), or None when it has none."""
    model = config.get("model") if isinstance(config, dict) else None
    return model.get("layers") if isinstance(model, dict) else None


def summary(layers: Any, path: str = "model.layers") -> str:
    """The whole layer list in one line, the course reports' style:
    `conv(3,6)-max(2)-conv(3,12)-max(2)-conv(3,24)-avg(3)` ("" for an empty list).
    Raises ConfigError for a malformed list."""
    return "-".join(e.text for e in entries(layers, path))


def layer_text(entry: LayerEntry) -> str:
    """Short book-style text of a layer (a block with its contents); the same as nn.layers.describe_spec
    for a layer as the resolved config stores it. Raises ConfigError for a missing or malformed parameter."""
    try:
        return _text(entry)
    except (TypeError, ValueError, AttributeError) as e:  # e.g. a string where a number belongs
        raise ConfigError(f"{entry.type}: cannot describe {entry.params!r} ({e})", path=entry.path) from None


def _text(e: LayerEntry) -> str:
    p = e.param
    if e.type in ("full", "conv"):
        extra = [x for x in (p("actfunc", None), "bn" if p("batch_normal", False) not in (False, None) else None) if x]
        if e.type == "full":
            return str(p("width")) + (f"({','.join(extra)})" if extra else "")
        return f"conv({','.join(map(str, [_pair(p('ksize')), p('chn'), *extra]))})"
    if e.type in ("max", "avg"):
        return f"{e.type}({_pair(p('stride'))})"
    if e.type == "dropout":
        return f"dropout({p('keep_prob', 1.0):g}{', eval' if p('scale', 'train') == 'eval' else ''})"
    if e.type == "noise":
        if p("type", "normal") == "normal":
            return f"noise(normal std={p('std', 1.0):g})"
        return f"noise(uniform {p('low', -1.0):g}..{p('high', 1.0):g})"
    if e.type == "activation":
        return str(p("actfunc", "relu"))
    if e.type in BLOCK_LISTS:
        inner = "-".join(x.text for x in e.nested()[0])
        repeat = p("repeat", 1)
        times = f"×{repeat}" if e.type == "serial" and repeat > 1 else ""
        return f"{e.type}{times}[{inner}]"
    if e.type in BRANCH_LISTS:
        return f"{e.type}[" + " | ".join("-".join(x.text for x in branch) or "id" for branch in e.nested()) + "]"
    return e.type


def _pair(v: Any) -> str:
    """A kernel size or stride: `3`, or `3x1` for [height, width]."""
    return str(v) if isinstance(v, int) else "x".join(map(str, v))


def regularizer_setting(entry: LayerEntry) -> str | None:
    """A regularizing layer's setting as compare's regularizer column shows it: dropout's keep_prob (`0.6`),
    noise's std (`0.01`) or range (`uniform -1..1`), `""` for batch_normal; None for any other layer."""
    if entry.type not in REGULARIZER_LAYERS:
        return None
    try:
        if entry.type == "dropout":
            return f"{entry.param('keep_prob', 1.0):g}"
        if entry.type == "noise":
            if entry.param("type", "normal") == "uniform":
                return f"uniform {entry.param('low', -1.0):g}..{entry.param('high', 1.0):g}"
            return f"{entry.param('std', 1.0):g}"
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{entry.type}: cannot describe {entry.params!r} ({e})", path=entry.path) from None
    return ""
