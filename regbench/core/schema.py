"""Typed parsing of plain YAML data into frozen dataclasses, with one-line errors naming the key path.

Config sections and layer parameters are both frozen dataclasses; `parse` checks unknown keys, types and
(through `__post_init__` calling `require`) ranges, and `to_plain` turns them back into YAML-ready data.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from .errors import ConfigError
from .safeload import load_yaml_bounded, read_limited, short_repr


class FieldError(ValueError):
    """Raised from a dataclass's `__post_init__` for a value out of range; `parse` adds the key path."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(message)


def require(ok: bool, field: str, message: str, value: Any = dataclasses.MISSING) -> None:
    """Raise FieldError(field, message) unless `ok`; `value` is quoted in the message when given."""
    if not ok:
        got = "" if value is dataclasses.MISSING else f", got {value!r}"
        raise FieldError(field, message + got)


class DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, mark: Any):
        self.key, self.mark = key, mark
        super().__init__(f"duplicate key {key!r}")


class Loader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-3` as a float (YAML 1.1 wants `1.0e-3`; users write `1e-3`) and
    refuses a key given twice in one mapping (YAML would silently keep the last one)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    raise DuplicateKey(key, key_node.start_mark)
                seen.add(key)
            except TypeError:  # an unhashable key: the base class reports it
                pass
        return super().construct_mapping(node, deep)


Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def read_yaml_file(path: Path, what: str = "a YAML file") -> Any:
    """Read and parse the YAML file at `path`; a missing or unreadable file is a one-line ConfigError."""
    label = str(path)
    data = read_limited(Path(path), what)  # a regular file of sane size: never /dev/zero or a FIFO
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"cannot read: not UTF-8 text (byte {e.start})", source=label) from None
    return load_yaml(text, source=label)


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML safely (no Python object tags), with depth and alias expansion bounded before anything is
    built (`safeload`); errors become a one-line ConfigError."""
    try:
        return load_yaml_bounded(text, Loader, source)
    except DuplicateKey as e:
        line = f" at line {e.mark.line + 1}" if e.mark else ""
        raise ConfigError(
            f"key {e.key!r} is given twice in one mapping{line} (YAML would keep only the last)", source=source
        ) from None
    except yaml.constructor.ConstructorError as e:
        tag = getattr(e, "problem", "") or ""
        line = f" (line {e.problem_mark.line + 1})" if getattr(e, "problem_mark", None) else ""
        if "unhashable key" in tag:
            raise ConfigError(
                f"a mapping key{line} is a list or mapping; keys must be plain values", source=source
            ) from None
        raise ConfigError(f"unsafe or unknown YAML tag rejected{line}: {tag}", source=source) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"invalid YAML{where}: {problem}", source=source) from None
    except ValueError as e:  # an integer literal of more than 4300 digits
        raise ConfigError(f"invalid YAML: {short_repr(str(e))}", source=source) from None


def join(path: str, key: str | int) -> str:
    """Key path notation used in messages: `a.b`, `a[2]`."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def type_name(tp: Any) -> str:
    """A short, user-facing name for a type hint."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(str(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if origin in (list, tuple):
        return f"list of {type_name(typing.get_args(tp)[0])}"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def describe(value: Any) -> str:
    """A value quoted in a message: at most 60 characters, never built from the whole value."""
    return short_repr(value, 60)


def parse(tp: Any, value: Any, path: str = "") -> Any:
    """Check `value` against the type hint `tp` and build it; raise ConfigError naming `path` if it does not fit."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return _parse_dataclass(tp, value, path)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices or isinstance(value, bool) != any(isinstance(c, bool) for c in choices):
            raise ConfigError(f"expected one of {', '.join(map(str, choices))}; got {describe(value)}", path=path)
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"expected {type_name(tp)}, got null", path=path)
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return parse(arg, value, path)
            except ConfigError as e:
                errors.append(e)
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(f"expected {type_name(tp)}, got {describe(value)}", path=path)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"expected a list, got {describe(value)}", path=path)
        item = typing.get_args(tp)[0]
        items = [parse(item, v, join(path, i)) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"expected true or false, got {describe(value)}", path=path)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
                return int(value)
            raise ConfigError(f"expected an integer, got {describe(value)}", path=path)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"expected a number, got {describe(value)}", path=path)
        if not math.isfinite(value):
            raise ConfigError(f"expected a finite number, got {value}", path=path)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"expected a string, got {describe(value)}", path=path)
        return value
    raise TypeError(f"schema: unsupported type {tp!r} at {path}")  # a bug in regbench, not user input


_HINTS: dict[type, dict[str, Any]] = {}


def hints(cls: type) -> dict[str, Any]:
    """Resolved type hints of a dataclass (cached; the modules use `from __future__ import annotations`)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _parse_dataclass(cls: type, value: Any, path: str) -> Any:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ConfigError(f"expected a mapping of {type_name_keys(cls)}, got {describe(value)}", path=path)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in value:
        if key not in fields:
            near = _closest(str(key), fields)
            hint = f" (did you mean '{near}'?)" if near else ""
            raise ConfigError(f"unknown key '{key}'{hint}; allowed: {', '.join(fields)}", path=join(path, str(key)))
    for name, f in fields.items():
        if name not in value and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required key '{name}'", path=join(path, name))
    th = hints(cls)
    kwargs = {name: parse(th[name], value[name], join(path, name)) for name in fields if name in value}
    try:
        return cls(**kwargs)
    except FieldError as e:
        raise ConfigError(str(e), path=join(path, e.field)) from None


def type_name_keys(cls: type) -> str:
    return "{" + ", ".join(f.name for f in dataclasses.fields(cls) if f.init) + "}"


def _closest(key: str, names: typing.Iterable[str]) -> str | None:
    import difflib

    match = difflib.get_close_matches(key, list(names), n=1, cutoff=0.75)
    return match[0] if match else None


def only_when(default: Any, key: str, *values: Any) -> Any:
    """A dataclass field that applies only when field `key` is one of `values` (a normal init's std, a
    uniform noise's low and high): left out of the plain form when it does not apply and holds its default."""
    return dataclasses.field(default=default, metadata={"only_when": (key, values)})


def applies(obj: Any, f: dataclasses.Field) -> bool:
    """Whether field `f` of dataclass `obj` belongs in its plain form (see `only_when`)."""
    when = f.metadata.get("only_when")
    if when is None:
        return True
    key, values = when
    return getattr(obj, key) in values or getattr(obj, f.name) != f.default


def to_plain(obj: Any) -> Any:
    """Dataclasses/tuples → dicts/lists that `yaml.safe_dump` and `json.dumps` accept; a field that does not
    apply (`only_when`) and holds its default is left out."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj) if applies(obj, f)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj
