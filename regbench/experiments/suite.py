"""Suites: named groups of configs trained by one command and compared in one table (`regbench suite NAME`).

`configs/suites.yaml` maps a group name to its configs (paths relative to that file), a `doc` line, an
optional `baseline` (a config name: the compare table's verdicts are against it) and optional `set`
overrides for every config; a group may instead list other `groups`, which run in turn, each with its own
table. A file of its own with a `configs:` list is a group too.

`run_suite` trains every config of a group — once per seed with `seeds` — into one folder: runs whose
configs can stack (regbench.training.execute: they differ only in seed, lr, weight decay, L2/L1, dropout keep_prob,
noise std or what they print) train side by side as one stacked model, the others one by one. It returns
the runs and the group's compare table (seed groups as mean ± std).

`smoke=True` is the stand-in override CI uses: every config trains one tiny epoch on a few samples, and a
data set whose files are absent is replaced by the `synthetic` set with the same input shape and output
heads, so every group runs on any machine in seconds.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..analysis.compare import CompareError, Comparison, compare
from ..config import NAME_RE, Config, override_at, parse_override
from ..core.errors import ConfigError, DataError
from ..core.files import atomic_write
from ..core.provenance import config_source
from ..core.schema import describe, parse, read_yaml_file, require
from ..resolve import load_config, read_config
from ..rundir import SUMMARY
from .sweep_spec import check_files

SUITES_FILE = Path("configs") / "suites.yaml"  # where `regbench suite NAME` looks first (then beside the package)
SMOKE_LIMIT = {"train": 10, "val": 5, "test": 5}  # samples per split in a smoke run (stratified caps)
SMOKE_COUNT = 100  # samples of a synthetic stand-in


# ----------------------------------------------------------------------------------------------- the file
@dataclass(frozen=True)
class GroupEntry:
    """One group as written in a suites file (or a group file of its own)."""

    doc: str = ""  # one line for `regbench suite --list`
    configs: list[str] | None = None  # config files, relative to the suites file
    groups: list[str] | None = None  # or: other groups of the same file, run in turn
    baseline: str | None = None  # a config name: Δ, p and the verdict of every other row are against it
    set: Any = None  # {dotted.key: value} applied to every config (as --set)
    name: str | None = None  # a group file of its own: its name (default: the file name)

    def __post_init__(self):
        require((self.configs is None) != (self.groups is None), "configs", "give configs: or groups: (one of them)")
        require(self.configs != [] and self.groups != [], "configs", "must list at least one entry")
        ok = self.set is None or (isinstance(self.set, dict) and all(isinstance(k, str) for k in self.set))
        require(ok, "set", "must be a mapping of dotted keys to values, e.g. {train.epochs: 3}", self.set)


@dataclass(frozen=True)
class Suite:
    """A resolved group: its config files (or the groups it runs), baseline and overrides."""

    name: str
    doc: str
    source: str  # the file it was read from, for messages
    configs: tuple[Path, ...] = ()
    groups: tuple[str, ...] = ()
    baseline: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def composite(self) -> bool:
        return bool(self.groups)


def default_file() -> Path:
    """`configs/suites.yaml` in the working directory, else the one in regbench's source tree."""
    here = Path.cwd() / SUITES_FILE
    if here.is_file():
        return SUITES_FILE
    beside = Path(__file__).resolve().parents[2] / SUITES_FILE
    return beside if beside.is_file() else SUITES_FILE


def is_group(raw: Any) -> bool:
    """A single group (a mapping with `configs:`), as opposed to a suites file (a mapping of groups)."""
    return isinstance(raw, dict) and "configs" in raw


def load_suites(path: str | Path | None = None) -> dict[str, Suite]:
    """Read a suites file (default: `default_file()`): every group, checked — names, config files that exist,
    groups that exist and do not contain themselves. Raises ConfigError (file, key path, what is allowed)."""
    path = Path(path) if path is not None else default_file()
    raw = read_yaml_file(path)
    label = str(path)
    if is_group(raw):
        suite = group_from(raw, None, path)
        return {suite.name: suite}
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"expected a mapping of group names to groups, got {describe(raw)}", source=label)
    suites = {}
    for name, entry in raw.items():
        suites[str(name)] = group_from(entry, str(name), path)
    for suite in suites.values():
        for i, ref in enumerate(suite.groups):
            if ref not in suites:
                raise ConfigError(unknown_group(ref, suites), source=label, path=f"{suite.name}.groups[{i}]")
        expand(suite.name, suites)  # a group that contains itself is an error now, not when it runs
    return suites


def group_from(raw: Any, name: str | None, path: Path) -> Suite:
    """One group entry → Suite (config paths resolved against the file's folder and checked to exist)."""
    label = str(path)
    where = name or ""
    if not isinstance(raw, dict):
        raise ConfigError(
            f"expected a mapping with configs: (or groups:), got {describe(raw)}", source=label, path=name
        )
    try:
        entry = parse(GroupEntry, raw, where)
    except ConfigError as e:
        raise ConfigError(e.detail, source=label, path=e.path) from None
    if name is not None and entry.name is not None:
        raise ConfigError("a group in a suites file is named by its key", source=label, path=f"{name}.name")
    name = name or entry.name or re.sub(r"[^A-Za-z0-9._-]", "_", path.stem)
    if NAME_RE.fullmatch(name) is None:
        raise ConfigError("a group name is letters, digits, '.', '_' or '-'", source=label, path=name)
    if entry.groups is not None and entry.name is not None:
        raise ConfigError("a group file of its own lists configs:, not groups:", source=label, path="groups")
    configs = []
    for i, rel in enumerate(entry.configs or []):
        file = Path(rel) if Path(rel).is_absolute() else path.parent / rel
        if not file.is_file():
            raise ConfigError(f"config file not found: {file}", source=label, path=f"{where}.configs[{i}]".lstrip("."))
        if file.resolve() in [c.resolve() for c in configs]:
            raise ConfigError(
                f"{rel} is listed twice (use --seeds K for repeats)",
                source=label,
                path=f"{where}.configs[{i}]".lstrip("."),
            )
        configs.append(file)
    overrides = dict(entry.set or {})
    return Suite(name, entry.doc, label, tuple(configs), tuple(entry.groups or ()), entry.baseline, overrides)


def unknown_group(name: str, suites: dict[str, Suite]) -> str:
    import difflib

    near = difflib.get_close_matches(name, list(suites), n=1, cutoff=0.6)
    hint = f" (did you mean '{near[0]}'?)" if near else ""
    return f"unknown group '{name}'{hint}; `regbench suite --list` shows them: {', '.join(suites)}"


def expand(name: str, suites: dict[str, Suite], stack: tuple[str, ...] = ()) -> list[Suite]:
    """The groups with configs that group `name` runs, in order (a group of groups expands recursively)."""
    if name in stack:
        raise ConfigError(f"group '{name}' contains itself ({' → '.join((*stack, name))})", source=suites[name].source)
    suite = suites[name]
    if not suite.composite:
        return [suite]
    out: list[Suite] = []
    for ref in suite.groups:
        out += [s for s in expand(ref, suites, (*stack, name)) if s not in out]
    return out


def find_suites(target: str | Path, suites_file: str | Path | None = None) -> list[Suite]:
    """What `regbench suite TARGET` runs: a group name from the suites file, a group file of its own (a YAML
    with `configs:`), or a suites file (all of its groups). Returns the groups with configs, in order."""
    text = str(target)
    path = Path(text)
    if path.suffix in (".yaml", ".yml") or path.is_file() or "/" in text:
        raw = read_yaml_file(path)
        if is_group(raw):
            return [group_from(raw, None, path)]
        if isinstance(raw, dict) and {"model", "data", "train"} & set(raw):
            raise ConfigError(
                "this is an experiment config: `regbench train` trains it (a suite file lists configs:)", source=text
            )
        suites = load_suites(path)
        out: list[Suite] = []
        for name in suites:
            out += [s for s in expand(name, suites) if s not in out]
        return out
    suites = load_suites(suites_file)
    if text not in suites:
        source = str(suites_file or default_file())
        raise ConfigError(unknown_group(text, suites), source=source)
    return expand(text, suites)


# ----------------------------------------------------------------------------------------------- planning
def stand_in(cfg: Config) -> Config:
    """`cfg` as a smoke run: one tiny epoch (no `iterations`) on at most SMOKE_LIMIT samples per split, no
    samples shown, at most 2 ensemble members; an absent data set becomes `synthetic` with the same input
    shape and heads (its split ratios and augmentation kept; `unit`, which needs a pixel format, dropped)."""
    from ..data import DATASETS, data_info

    doc = cfg.to_dict()
    data = doc["data"]
    if DATASETS[cfg.data.name].missing(cfg.data):
        info = data_info(cfg.data)
        c, *hw = info.input_shape
        shape = [*hw, c] if hw else [c]
        sizes = info.head_sizes
        keep_norm = data["normalize"] if data["normalize"] in ("center", "standardize") else None
        split = data["split"] if data["split"] != "official" else {}
        data = {
            "name": "synthetic",
            "shape": shape,
            "classes": sizes[0] if len(sizes) == 1 else sizes,
            "count": SMOKE_COUNT,
            "seed": data["seed"],
            "split": split,
            "normalize": keep_norm,
            "augment": data["augment"],
        }
    limit = dict(data.get("limit") or {})
    data["limit"] = {k: min(limit.get(k) or math.inf, cap) for k, cap in SMOKE_LIMIT.items()}
    doc["data"] = data
    doc["train"].update(epochs=1, iterations=None, show=0, ensemble=min(doc["train"]["ensemble"], 2))
    doc["train"]["batch_size"] = min(doc["train"]["batch_size"], SMOKE_LIMIT["train"])  # a batch fits the few samples
    return load_config(doc)


@dataclass
class Plan:
    """What a suite will train: every config (once per seed) in training order, grouped into passes."""

    suite: Suite
    configs: list[tuple[Path, Config]]  # each config file and its resolved config (seed 0 of its group)
    passes: list[list[Config]]  # runs trained together (side by side when they stack)
    seeds: list[int] | int | None
    smoke: bool

    @property
    def runs(self) -> int:
        return sum(len(p) for p in self.passes)

    @property
    def absent(self) -> list[str]:
        """The data sets of the plan whose files are not here (and not set to download)."""
        from ..data import DATASETS

        out = []
        for _, cfg in self.configs:
            if DATASETS[cfg.data.name].missing(cfg.data) and not cfg.data.download and cfg.data.name not in out:
                out.append(cfg.data.name)
        return out


def override_dict(overrides: dict[str, Any] | Sequence[str] | None) -> dict[str, Any]:
    if overrides is None:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    return dict(parse_override(text) for text in overrides)


def plan_suite(
    suite: Suite,
    *,
    seeds: int | Sequence[int] | None = None,
    overrides: dict[str, Any] | Sequence[str] | None = None,
    smoke: bool = False,
    check_data: bool = True,
    vary_split: bool = False,
) -> Plan:
    """Load and check every config of `suite` (its `set`, then `overrides`), and its data files unless
    `smoke` (or `check_data=False`: `Plan.absent` names them); expand the seeds (with `vary_split`, each seed
    also draws its own data split: data.seed = seed); group the runs into passes.
    Raises ConfigError or DataError (one line) before anything is written."""
    from ..training.execute import seed_list, stack_key

    if suite.composite:
        raise ConfigError(f"group '{suite.name}' runs other groups; find_suites() expands it", source=suite.source)
    extra = override_dict(overrides)
    loaded: list[tuple[Path, Config]] = []
    for file in suite.configs:
        try:
            cfg = load_config(file, {**suite.overrides, **extra})
        except ConfigError as e:  # name the group's own `set:` when its value is the one at fault
            key = override_at(e.path, [k for k in suite.overrides if k not in extra])
            if key is None:
                raise
            raise ConfigError(f"{e.detail} (in {file.name})", source=suite.source, path=f"set.{key}") from None
        if smoke:
            cfg = stand_in(cfg)
        elif check_data:
            try:
                check_files(cfg)
            except DataError as e:
                raise DataError(
                    f"suite {suite.name}: {file}: {e} (or `regbench suite {suite.name} --smoke` trains a tiny "
                    "stand-in on synthetic data)"
                ) from None
        loaded.append((file, cfg))
    names = [cfg.name for _, cfg in loaded]
    if suite.baseline is not None and suite.baseline not in names:
        raise ConfigError(
            f"baseline '{suite.baseline}' is not the name of one of the group's configs ({', '.join(names)})",
            source=suite.source,
            path=f"{suite.name}.baseline",
        )
    runs: list[Config] = []
    for _, cfg in loaded:
        values = [cfg.seed] if seeds is None else seed_list(cfg.seed, seeds)
        for s in values:
            data = dataclasses.replace(cfg.data, seed=s) if vary_split else cfg.data
            runs.append(dataclasses.replace(cfg, seed=s, data=data))
    passes: dict[str, list[Config]] = {}
    for i, cfg in enumerate(runs):  # an ensemble stacks its own members, so it trains alone
        key = stack_key(cfg) if cfg.train.ensemble == 1 else f"ensemble:{i}"
        passes.setdefault(key, []).append(cfg)
    return Plan(suite, loaded, list(passes.values()), seeds, smoke)


# ----------------------------------------------------------------------------------------------- running
@dataclass
class SuiteResult:
    """A finished group: its folder, its run directories, the compare table and what went wrong."""

    suite: Suite
    folder: Path
    runs: list[Path]
    comparison: Comparison | None
    problems: list[str]  # one line per run that diverged or failed
    diverged_only: bool  # every problem was a divergence (exit code 3, as `regbench train`)
    seconds: float
    notes: list[str] = field(default_factory=list)


def folder_of(suite: Suite, out: str | Path, smoke: bool) -> Path:
    """Where a group's runs go: `out/<name>/`, or `out/smoke/<name>/` for rehearsals (kept apart from results)."""
    return Path(out) / "smoke" / suite.name if smoke else Path(out) / suite.name


def mark_smoke(runs: Sequence[Path]) -> None:
    """Mark rehearsal runs `"smoke": true` in summary.json: compare and report leave them out unless asked."""
    for path in runs:
        file = path / SUMMARY
        summary = json.loads(file.read_text(encoding="utf-8"))
        summary["smoke"] = True
        atomic_write(file, (json.dumps(summary, indent=2, ensure_ascii=False) + "\n").encode())


def pass_line(suite: Suite, i: int, n: int, cfgs: list[Config], side_by_side: bool) -> str:
    names = list(dict.fromkeys(c.name for c in cfgs))
    per = len(cfgs) // len(names) if len(cfgs) % len(names) == 0 else None
    what = ", ".join(names) if len(names) <= 3 else f"{', '.join(names[:2])}, … ({len(names)} configs)"
    if per and per > 1:
        what += f" × {per} seeds"
    how = f", {len(cfgs)} side by side" if side_by_side and len(cfgs) > 1 else ""
    return f"Suite {suite.name} [{i}/{n}]: {what}{how}"


def run_suite(
    plan: Plan,
    out: str | Path = "runs/suites",
    *,
    lang: str = "ko",
    quiet: bool = False,
    stack: int | None = None,
    say: Callable[[str], None] | None = None,
    progress: Callable[[int, int, int], None] | None = None,
) -> SuiteResult:
    """Train a planned group into `out/<name>/` (`smoke/<name>/` for smoke runs, marked in summary.json), pass by pass: side by side
    where the runs stack (unless `stack` is 1), one by one otherwise. A run that diverges or fails is
    recorded and the others go on. Ends with the compare table of this call's runs (the group's baseline,
    seed groups as mean ± std). `progress(done, total, failed)` counts runs, at the start and after each batch."""
    from ..training import execute
    from ..training.member import status_of

    say = say or (lambda _line: None)
    suite = plan.suite
    folder = folder_of(suite, out, plan.smoke)
    folder.mkdir(parents=True, exist_ok=True)
    runs: list[Path] = []
    problems: list[str] = []
    diverged_only = True
    t0 = time.perf_counter()
    total = sum(len(cfgs) for cfgs in plan.passes)
    done = failed = 0
    if progress is not None:
        progress(done, total, failed)
    files = {cfg.name: file for file, cfg in plan.configs}  # provenance: the repository of each config file
    for i, cfgs in enumerate(plan.passes, 1):
        groups = execute.stack_groups(cfgs, stack)  # the engine's own grouping: what trains side by side
        if not quiet:
            say(pass_line(suite, i, len(plan.passes), cfgs, len(groups) == 1 and len(cfgs) > 1))
        before = set(folder.iterdir())
        for group in groups:  # a group that fails is recorded and the suite goes on
            batch = [cfgs[j] for j in group]
            ok = False
            try:
                with config_source(files.get(batch[0].name)):
                    execute.train_group(batch, folder, lang=lang, quiet=quiet, stack=stack)
                ok = True
            except Exception as e:
                status, error = status_of(e)
                problems.append(error if status == "diverged" else f"{batch[0].name}: {error}")
                diverged_only = diverged_only and status == "diverged"
            done += len(batch)
            failed += 0 if ok else len(batch)
            if progress is not None:
                progress(done, total, failed)
        made = sorted(p for p in set(folder.iterdir()) - before if (p / SUMMARY).is_file())
        if plan.smoke:
            mark_smoke(made)
        runs += made
    seconds = time.perf_counter() - t0
    comparison, notes = None, []
    if runs:
        try:
            comparison = compare(runs, baseline=suite.baseline, smoke=plan.smoke)
        except CompareError as e:  # the baseline's runs diverged or failed: the table without verdicts
            notes.append(f"no verdicts: {e}")
            comparison = compare(runs, smoke=plan.smoke)
        order = {cfg.name: i for i, (_, cfg) in enumerate(plan.configs)}  # rows in the group's order
        comparison.rows.sort(key=lambda row: order.get(str(row.runs[0].config.get("name")), len(order)))
    return SuiteResult(suite, folder, runs, comparison, problems, diverged_only and bool(problems), seconds, notes)


# ----------------------------------------------------------------------------------------------- listing
def list_groups(suites_file: str | Path | None = None) -> list[dict[str, Any]]:
    """One row per group of the suites file: name, doc, what it runs (config count, or the groups), and the
    data sets its configs read with whether their files are here."""
    from ..data import DATASETS

    suites = load_suites(suites_file)
    rows = []
    for name, suite in suites.items():
        leaves = expand(name, suites)
        data: dict[str, bool] = {}
        for leaf in leaves:
            for file in leaf.configs:
                cfg = read_config(file, leaf.overrides)
                data[cfg.data.name] = data.get(cfg.data.name, True) and not DATASETS[cfg.data.name].missing(cfg.data)
        count = sum(len(leaf.configs) for leaf in leaves)
        rows.append(
            {
                "name": name,
                "doc": suite.doc,
                "configs": count,
                "groups": list(suite.groups),
                "data": data,
                "present": all(data.values()),
            }
        )
    return rows
