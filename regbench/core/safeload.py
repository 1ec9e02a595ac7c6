"""Parsing untrusted files with limits: size, nesting depth and YAML alias expansion are bounded before any
value is built, and a value is never repr'd whole in a message.

A 1 KB YAML alias bomb expands to gigabytes once constructed, a 100 000-deep `[[[…` is a RecursionError in
every recursive walk after it, and `/dev/zero` or a FIFO never ends: each is one `ConfigError` line here.
Config files, `--set` values and the files of a run directory (config.yaml, summary.json, metrics.jsonl)
all go through these functions.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

MAX_FILE_BYTES = 16 * 1024 * 1024  # a config or run file; the largest real one is a few hundred KB
MAX_DEPTH = 64  # nesting of mappings/lists; real configs stay under 15
MAX_NODES = 200_000  # values after alias expansion; a 10 000-trial sweep list is ~20 000


class LimitError(ConfigError):
    """A file or value over one of the parsing limits (size, depth, alias expansion)."""


def read_limited(path: Path, what: str = "a file", max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most `max_bytes`; a device, FIFO, directory or huge file is one line
    (checked with stat before opening, so `/dev/zero` or a FIFO never blocks)."""
    label = str(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ConfigError("file not found", source=label) from None
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror or e}", source=label) from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"is a directory, expected {what}", source=label)
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"not a regular file (a device, FIFO or socket), expected {what}", source=label)
    if st.st_size > max_bytes:
        raise LimitError(f"{st.st_size} bytes, more than the {max_bytes} allowed for {what}", source=label)
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)  # the file may grow between stat and read
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror or e}", source=label) from None
    if len(data) > max_bytes:
        raise LimitError(f"more than the {max_bytes} bytes allowed for {what}", source=label)
    return data


def check_node(node: Any, source: str, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> None:
    """Refuse a composed YAML node graph that is too deep or expands (aliases followed) to too many values.

    Iterative, and each node is visited once (its expanded size and depth are memoized), so a bomb costs
    time linear in its text, not in its expansion.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    stack: list[tuple[Any, bool]] = [(node, False)]
    active: set[int] = set()
    while stack:
        n, done = stack.pop()
        key = id(n)
        children = _children(n)
        if done:
            active.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            if size[key] > max_nodes:
                line = f" (line {n.start_mark.line + 1})" if n.start_mark else ""
                raise LimitError(
                    f"a value{line} expands to more than {max_nodes} items (a YAML alias bomb?)", source=source
                )
            if depth[key] > max_depth:
                raise LimitError(f"nested more than {max_depth} levels deep", source=source)
            continue
        if key in size:
            continue
        if key in active:
            raise LimitError("a YAML alias refers to itself (a recursive structure)", source=source)
        active.add(key)
        stack.append((n, True))
        stack.extend((c, False) for c in children if id(c) not in size)


def _children(node: Any) -> list[Any]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [x for pair in node.value for x in pair]
    return []


def load_yaml_bounded(text: str | bytes, loader: type, source: str) -> Any:
    """Compose the YAML document, check its limits (`check_node`), then construct it with `loader`.

    yaml errors propagate for the caller to word; over-deep text (a RecursionError inside the composer)
    and the limits are a LimitError.
    """
    ld = loader(text)
    try:
        try:
            node = ld.get_single_node()
        except RecursionError:
            raise LimitError(f"nested more than {MAX_DEPTH} levels deep", source=source) from None
        if node is None:
            return None
        check_node(node, source)
        return ld.construct_document(node)
    finally:
        ld.dispose()


def load_json_bounded(text: str | bytes, source: str, max_depth: int = MAX_DEPTH) -> Any:
    """`json.loads` with the depth bounded (a RecursionError or a too-deep result is a LimitError)."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise LimitError(f"nested more than {max_depth} levels deep", source=source) from None
    if json_depth(data) > max_depth:
        raise LimitError(f"nested more than {max_depth} levels deep", source=source)
    return data


def json_depth(value: Any) -> int:
    """Nesting depth of plain data (dicts/lists), computed without recursion."""
    best = 0
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            v = list(v.values())
        if isinstance(v, (list, tuple)):
            best = max(best, d)
            stack.extend((x, d + 1) for x in v)
    return best


def short_repr(value: Any, limit: int = 60) -> str:
    """`repr(value)` cut to `limit` characters, built piecewise so a huge or deep value costs O(limit)."""
    out: list[str] = []
    used = 0
    stack: list[Any] = [value]
    while stack and used <= limit:
        v = stack.pop()
        if isinstance(v, _Text):
            piece = v.text
        elif isinstance(v, dict):
            items = list(v.items())[: limit // 2 + 1]
            parts: list[Any] = [_Text("{")]
            for i, (k, x) in enumerate(items):
                parts += [_Text(", ")] if i else []
                parts += [k, _Text(": "), x]
            stack.extend(reversed(parts + [_Text("}")]))
            continue
        elif isinstance(v, (list, tuple)):
            items = list(v[: limit // 2 + 1])
            open_, close = ("[", "]") if isinstance(v, list) else ("(", ")")
            parts = [_Text(open_)]
            for i, x in enumerate(items):
                parts += [_Text(", ")] if i else []
                parts.append(x)
            stack.extend(reversed(parts + [_Text(close)]))
            continue
        elif isinstance(v, str):
            piece = repr(v[: limit + 1])
        else:
            piece = repr(v)[: limit + 3]
        out.append(piece)
        used += len(piece)
    text = "".join(out)
    return text if len(text) <= limit and not stack else text[: limit - 3] + "..."


class _Text:
    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text
