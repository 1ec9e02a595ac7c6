"""The package's imports run one way: no cycles, nothing upward, the CLI through the API only, small modules,
and `import regbench` / `regbench --help` without torch.

The module graph is read with `ast` from every file of the package: module-level and function-level imports,
absolute and relative, `TYPE_CHECKING` blocks included (stricter than what runs, and what a reader sees).
`from pkg import name` is an edge to `pkg.name` when that is a module of the package, else to `pkg`.

The layers, lowest first, are LAYERS below. `regbench.book` is a client of the API, as the CLI is (it calls
only `regbench.api`), so it sits with the CLI above the API; the top package (`regbench/__init__.py`, which
loads the API's names lazily) and `__main__.py` sit above everything, so no module of the package imports them.
The violations of a rule are listed together, each as `file:line: module imports module: rule`.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "regbench"
MAX_LINES = 600

# The allowed direction, lowest first: a module may import modules of its own layer or of a layer below.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("core",)),
    ("config", ("config",)),
    ("nn/stacked/optim/regularize/data", ("nn", "stacked", "optim", "regularize", "data")),
    ("resolve/rundir", ("resolve", "rundir")),
    ("training", ("training",)),
    ("analysis/runner", ("analysis", "runner")),
    ("experiments", ("experiments",)),
    ("api", ("api",)),
    # the book, like the CLI, is a client of the API (it calls only regbench.api), so it sits above it
    ("cli/book", ("cli", "book")),
    # the top package (its __init__ loads the API's names lazily) and `python -m regbench`: above everything,
    # so nothing inside the package may import them
    ("top", ("__init__", "__main__")),
]
DIRECTION = " → ".join(name for name, _ in reversed(LAYERS[:-1]))
LEVEL = {part: i for i, (_, parts) in enumerate(LAYERS) for part in parts}
LAYER_NAME = {part: name for name, parts in LAYERS for part in parts}


@dataclass(frozen=True)
class Edge:
    source: str  # importing module, e.g. regbench.cli.train
    target: str  # imported module of the package
    file: str  # the importing file, relative to the repository
    line: int

    def where(self) -> str:
        return f"{self.file}:{self.line}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_files() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = package_files()


def resolve_from(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module name `from <node.module> import …` refers to, relative imports resolved."""
    if node.level == 0:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(module: str, path: Path) -> list[Edge]:
    """Every import of a package module in `path`, wherever it is in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    file = str(path.relative_to(ROOT))
    edges = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            for alias in node.names:
                # `import regbench.a.b` binds regbench and imports regbench.a.b: the deepest module is the edge
                name = alias.name
                while name and name not in MODULES:
                    name = name.rpartition(".")[0]
                targets.append(name)
        elif isinstance(node, ast.ImportFrom):
            base = resolve_from(module, path, node)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.append(sub if sub in MODULES else base)
        for target in targets:
            edge = Edge(module, target, file, node.lineno)
            if target in MODULES and target != module and edge not in edges:
                edges.append(edge)
    return edges


def all_edges() -> list[Edge]:
    return [edge for module, path in MODULES.items() for edge in imports_of(module, path)]


EDGES = all_edges()


def part_of(module: str) -> str:
    """The layer key of a module: its first name under regbench (`__init__` for the top package itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_of(module: str) -> str:
    return LAYER_NAME.get(part_of(module), "?")


# ----------------------------------------------------------------------------------------------- the graph
def test_the_graph_is_read():
    """A guard for the reader itself: known edges of every kind are found."""
    found = {(e.source, e.target) for e in EDGES}
    assert ("regbench.resolve", "regbench.config") in found  # from .config import …
    assert ("regbench.cli.main", "regbench.cli.train") in found  # from . import train
    assert ("regbench.data", "regbench.data.digits") in found  # package __init__ importing its modules
    assert ("regbench.api", "regbench.resolve") in found  # function-level import
    assert ("regbench.__main__", "regbench.cli.main") in found


def test_every_module_has_a_layer():
    unknown = sorted(m for m in MODULES if part_of(m) not in LEVEL)
    assert not unknown, "modules with no layer (add their package to LAYERS in tests/test_layering.py): " + ", ".join(
        str(MODULES[m].relative_to(ROOT)) for m in unknown
    )


def strongly_connected(nodes: list[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative): the strongly connected components of the graph."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                out.append(sorted(component))
    return out


def test_no_import_cycles():
    graph: dict[str, set[str]] = {}
    for e in EDGES:
        graph.setdefault(e.source, set()).add(e.target)
    cycles = [c for c in strongly_connected(sorted(MODULES), graph) if len(c) > 1]
    problems = []
    for component in cycles:
        inside = set(component)
        lines = [
            f"    {e.where()}: {e.source} imports {e.target}"
            for e in EDGES
            if e.source in inside and e.target in inside
        ]
        problems.append(f"import cycle between {', '.join(component)}:\n" + "\n".join(sorted(set(lines))))
    assert not problems, "no import cycles (function-level imports included):\n" + "\n".join(problems)


def test_no_upward_imports():
    problems = []
    for e in EDGES:
        source, target = part_of(e.source), part_of(e.target)
        if source not in LEVEL or target not in LEVEL:
            continue  # test_every_module_has_a_layer names them
        if LEVEL[target] > LEVEL[source]:
            problems.append(
                f"{e.where()}: {e.source} imports {e.target}: upward import from layer '{layer_of(e.source)}'"
                f" to layer '{layer_of(e.target)}' (allowed direction: {DIRECTION})"
            )
    assert not problems, "no upward imports:\n" + "\n".join(problems)


def test_cli_imports_only_the_api():
    problems = [
        f"{e.where()}: {e.source} imports {e.target}: a CLI module imports only regbench.api (and other cli modules)"
        for e in EDGES
        if part_of(e.source) == "cli" and e.target != "regbench.api" and part_of(e.target) != "cli"
    ]
    assert not problems, "the CLI calls only the API:\n" + "\n".join(problems)


def test_book_imports_only_the_api():
    """`regbench.book` is the course book's interface over the API: regbench.api, plus core's errors and
    console (the book's printed lines), and nothing of the training engine."""
    problems = [
        f"{e.where()}: {e.source} imports {e.target}: the book imports only regbench.api (and regbench.core)"
        for e in EDGES
        if e.source == "regbench.book" and e.target != "regbench.api" and part_of(e.target) != "core"
    ]
    assert not problems, "the book calls only the API:\n" + "\n".join(problems)


def test_modules_are_small():
    big = []
    for module, path in MODULES.items():
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > MAX_LINES:
            big.append(f"{path.relative_to(ROOT)}: {n} lines (module {module}; at most {MAX_LINES})")
    assert not big, "modules over the size limit:\n" + "\n".join(big)


# ----------------------------------------------------------------------------------------------- no torch
def python(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)


def imported(importtime_log: str) -> list[tuple[int, str]]:
    """The modules an `-X importtime` log lists, as (depth, name) in its order: a module after those it imports."""
    out = []
    for line in importtime_log.splitlines():
        if line.startswith("import time:") and "|" in line:
            column = line.rsplit("|", 1)[1]
            name = column.strip()
            out.append((len(column) - len(column.lstrip()), name))
    return out


def import_chain(log: list[tuple[int, str]], module: str) -> str:
    """The package modules that pulled `module` in, outermost first (`regbench.cli.x → … → module`)."""
    at = next((i for i, (_, name) in enumerate(log) if name == module), None)
    if at is None:
        return module
    chain, depth = [module], log[at][0]
    for d, name in log[at + 1 :]:
        if d < depth:  # the enclosing import
            depth = d
            if name.startswith("regbench"):
                chain.append(name)
    return " → ".join(reversed(chain))


def test_import_regbench_loads_no_torch():
    res = python("-c", "import sys, regbench, regbench.config; print('torch' in sys.modules)")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False", "`import regbench, regbench.config` imported torch"


@pytest.mark.parametrize("option", ["--help", "--version"])
def test_cli_help_loads_no_torch(option):
    res = python("-X", "importtime", "-m", "regbench", option)
    assert res.returncode == 0, res.stderr[-2000:]
    log = imported(res.stderr)
    assert "torch" not in {name for _, name in log}, (
        f"`python -m regbench {option}` imported torch ({import_chain(log, 'torch')}): a CLI module imports"
        " torch-heavy code only inside its command functions"
    )
