"""A sweep file: its base config, the parameters it varies and how, read and validated into a `Sweep`.

A sweep file names a `base` config (a path relative to the sweep file, or an inline mapping) and `params`,
dotted config keys mapped to `{values: [...]}` (a grid axis; `choices` is a synonym), `{low, high, log}`
ranges (random and TPE search) or a plain list (= values). `method: grid` runs every combination;
`random` draws `trials` points from the sweep's `seed` (trial t is always the same point); `tpe` lets
Optuna's TPE sampler propose each point from the finished ones. Each point is trained `seeds` times (the
base seed, +1, …); its metric is the mean over its seeds.

`load_sweep` reads the file (one-line ConfigErrors: file, key path, what is allowed); `Sweep` names the
trials and their run directories, gives their points and configs, and checks them before any work.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..config import KEY_RE, NAME_RE, Config, override_at
from ..core.errors import ConfigError, RegbenchError
from ..core.schema import FieldError, describe, parse, read_yaml_file, require, to_plain
from ..resolve import load_config, read_config
from .sweep_text import labels, params_text, value_text

Method = Literal["grid", "random", "tpe"]
Metric = Literal["val_acc", "best_val_acc", "test_acc", "val_loss", "test_loss"]
METRICS = {  # the label the book prints, and which way is better
    "val_acc": ("val acc", "maximize"),  # the last epoch's validation accuracy (the homework's val_acc_list[-1])
    "best_val_acc": ("best val acc", "maximize"),  # the best epoch's
    "test_acc": ("test acc", "maximize"),
    "val_loss": ("val loss", "minimize"),  # the last epoch's
    "test_loss": ("test loss", "minimize"),
}
# the sweep folder's own files: the index, the resolved sweep, the default study database, the folder's lock
INDEX, SPEC, STUDY_DB, LOCK = "sweep.json", "sweep.yaml", "study.db", ".sweep.lock"


class SweepError(RegbenchError):
    """A sweep directory that does not fit the sweep (another sweep's, another storage's), or is unreadable."""


@dataclass(frozen=True)
class ParamSpec:
    """How one dotted config key varies: a list of values, or a {low, high} range (random and TPE only)."""

    values: list[Any] | None = None  # a grid axis (random, tpe: one of them, uniformly)
    choices: list[Any] | None = None  # the same as values
    low: float | None = None  # a range: random and tpe only
    high: float | None = None
    log: bool = False  # draw uniformly in log space (10^U(log10 low, log10 high), as the homework)
    type: Literal["float", "int"] = "float"  # int: whole numbers in [low, high]

    def __post_init__(self):
        given = [self.values is not None, self.choices is not None, self.low is not None or self.high is not None]
        require(sum(given) == 1, "values", "give exactly one of {values: [...]}, {choices: [...]} or {low, high}")
        if self.options is not None:
            field_name = "values" if self.values is not None else "choices"
            require(len(self.options) >= 1, field_name, "must list at least one value")
            seen = [json.dumps(v, sort_keys=True, default=str) for v in self.options]
            require(len(set(seen)) == len(seen), field_name, "lists a value twice", self.options)
            require(not self.log and self.type == "float", "log", "log and type apply to {low, high} ranges only")
            return
        require(self.low is not None and self.high is not None, "high", "a range needs both low and high")
        require(self.low < self.high, "high", f"must be > low ({self.low})", self.high)
        require(not self.log or self.low > 0, "low", "must be > 0 with log: true", self.low)
        if self.type == "int":
            require(float(self.low).is_integer(), "low", "must be a whole number with type: int", self.low)
            require(float(self.high).is_integer(), "high", "must be a whole number with type: int", self.high)

    @property
    def options(self) -> list[Any] | None:
        return self.values if self.values is not None else self.choices

    def describe(self) -> str:
        if self.options is not None:
            return "{" + ", ".join(value_text(v) for v in self.options) + "}"
        if self.log:
            return f"10^U({math.log10(self.low):g}, {math.log10(self.high):g})"
        return f"{'integer ' if self.type == 'int' else ''}U({self.low:g}, {self.high:g})"


@dataclass(frozen=True)
class PruneSpec:
    """When to stop hopeless trials (Optuna's median pruner on the per-epoch validation value)."""

    type: Literal["none", "median"] = "median"  # median: stop a trial whose val acc is below the median so far
    startup_trials: int = 5  # trials that finish before anything is pruned (Optuna's n_startup_trials)
    warmup_epochs: int = 0  # epochs of every trial that are never pruned (n_warmup_steps)

    def __post_init__(self):
        require(self.startup_trials >= 0, "startup_trials", "must be ≥ 0", self.startup_trials)
        require(self.warmup_epochs >= 0, "warmup_epochs", "must be ≥ 0", self.warmup_epochs)


@dataclass(frozen=True)
class SweepFile:
    """A sweep file as written (checked field by field; `load_sweep` checks how the fields fit together)."""

    base: Any  # the config: a path (relative to the sweep file) or an inline mapping
    params: Any  # dotted config key → {values}, {choices}, {low, high, log, type} or a plain list of values
    name: str | None = None  # the sweep's folder and run-name prefix (default: the sweep file's name)
    method: Method = "grid"  # grid: every combination; random: `trials` draws; tpe: Optuna's TPE sampler
    trials: int | None = None  # random and tpe: how many points; grid: the number of combinations
    seeds: int = 1  # each point trained with seeds seed, seed+1, …; its metric is their mean
    seed: int = 0  # the sweep's own seed: random points and TPE's first points
    metric: Metric = "val_acc"  # what ranks the trials (val_acc: the last epoch's, as the homework)
    direction: Literal["maximize", "minimize"] | None = None  # null: the metric's (acc up, loss down)
    prune: Literal["none", "median"] | PruneSpec = "none"  # stop hopeless trials from their per-epoch val acc
    tpe_startup: int = 10  # tpe: the first N trials are random points (Optuna's n_startup_trials)
    set: Any = None  # overrides applied to the base config for every trial, e.g. {train.epochs: 3}

    def __post_init__(self):
        require(
            self.trials is None or 1 <= self.trials <= 100_000, "trials", "must be between 1 and 100000", self.trials
        )
        require(1 <= self.seeds <= 1000, "seeds", "must be between 1 and 1000", self.seeds)
        require(0 <= self.seed < 2**32, "seed", "must be between 0 and 2**32-1", self.seed)
        require(self.tpe_startup >= 0, "tpe_startup", "must be ≥ 0", self.tpe_startup)


@dataclass
class Sweep:
    """A validated sweep: the file's settings, the resolved base config and the parameter specs."""

    name: str
    source: str  # the file, for messages
    file: SweepFile
    base: dict[str, Any]  # the resolved base config (set applied) that every trial's params override
    base_config: Config
    params: dict[str, ParamSpec]
    trials: int
    identity: str  # a hash of everything that decides what the trials are

    @property
    def direction(self) -> str:
        return self.file.direction or METRICS[self.file.metric][1]

    @property
    def metric(self) -> str:
        return self.file.metric

    @property
    def study_name(self) -> str:
        return f"{self.name}-{self.identity}"

    @property
    def prune(self) -> PruneSpec | None:
        p = self.file.prune
        p = PruneSpec(type=p) if isinstance(p, str) else p
        return None if p.type == "none" else p

    # ---- trials
    def key(self, slot: int) -> str:
        return f"t{slot:0{max(3, len(str(self.trials - 1)))}d}"

    def run_name(self, slot: int) -> str:
        """The runs' config name (`<sweep>-t007`): a trial's seeds share it, so compare groups them."""
        return f"{self.name}-{self.key(slot)}"

    def run_dir(self, slot: int, k: int) -> str:
        return f"{self.run_name(slot)}-s{k}"

    def points(self) -> list[dict[str, Any]]:
        """Every point of a grid (the last key varies fastest), or the random points (trial t is always
        the same point for a given sweep seed); TPE: its random start points."""
        keys = list(self.params)
        if self.file.method == "grid":
            return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*self.options())]
        n = self.trials if self.file.method == "random" else min(self.file.tpe_startup, self.trials)
        return [self.random_point(t) for t in range(n)]

    fixed_points = points

    def options(self) -> list[list[Any]]:
        return [spec.options for spec in self.params.values()]

    def random_point(self, t: int) -> dict[str, Any]:
        import numpy as np

        rng = np.random.default_rng([self.file.seed, t])
        point = {}
        for key, spec in self.params.items():
            if spec.options is not None:
                point[key] = spec.options[int(rng.integers(len(spec.options)))]
                continue
            lo, hi = float(spec.low), float(spec.high)
            if spec.type == "int":  # every whole number in [low, high] can come out
                if spec.log:
                    v = int(10 ** rng.uniform(math.log10(lo), math.log10(hi + 1)))
                else:
                    v = int(rng.integers(int(lo), int(hi) + 1))
                point[key] = int(min(max(v, lo), hi))
            else:
                point[key] = float(
                    10 ** rng.uniform(math.log10(lo), math.log10(hi)) if spec.log else rng.uniform(lo, hi)
                )
        return point

    def seed_of(self, params: dict[str, Any], k: int) -> int:
        return int(params.get("seed", self.base_config.seed)) + k - 1

    def trial_config(self, params: dict[str, Any], slot: int, k: int = 1) -> Config:
        """The config of trial `slot`, seed number `k` (1-based): the base with the params applied."""
        overrides = {**params, "name": self.run_name(slot), "seed": self.seed_of(params, k)}
        try:
            return load_config(self.base, overrides=overrides)
        except ConfigError as e:
            raise self.param_error(e, params, slot) from None

    def param_error(self, e: ConfigError, params: dict[str, Any], slot: int) -> ConfigError:
        for key in params:
            if e.path and (e.path == key or e.path.startswith((key + ".", key + "["))):
                where = "" if e.path == key else f"{e.path}: "
                return ConfigError(
                    f"value {describe(params[key])} (trial {self.key(slot)}): {where}{e.detail}",
                    source=self.source,
                    path=f"params.{key}",
                )
        return ConfigError(f"trial {self.key(slot)} ({params_text(params, labels(params))}): {e}", source=self.source)

    def validate(self) -> None:
        """Every fixed point's config (and, for TPE, each range's ends and each choice) loads, the device
        exists and the data set's files are there; one line if not, before any work."""
        from ..training.plan import resolve_device

        if not any(k == "train.device" for k in self.params):
            try:
                resolve_device(self.base_config.train.device)
            except ConfigError as e:
                raise ConfigError(e.detail, source=self.source, path="base.train.device") from None
        if not any(k == "data" or k.startswith("data.") for k in self.params):
            check_files(self.base_config)
        for slot, point in enumerate(self.points()):
            self.trial_config(point, slot)
        if self.file.method == "tpe":
            first = {k: s.options[0] if s.options is not None else s.low for k, s in self.params.items()}
            for key, spec in self.params.items():
                for v in spec.options if spec.options is not None else [spec.low, spec.high]:
                    v = int(v) if spec.type == "int" else v
                    self.trial_config({**first, key: v}, 0)

    def to_dict(self) -> dict[str, Any]:
        """The resolved sweep as written to `sweep.yaml`: the base config inline, `set` already applied."""
        f = self.file
        params = {
            k: {n: v for n, v in to_plain(s).items() if v not in (None, False, "float")} for k, s in self.params.items()
        }
        out = {"name": self.name, "method": f.method, "trials": self.trials, "seeds": f.seeds, "seed": f.seed}
        out.update(metric=f.metric, direction=self.direction, prune=to_plain(f.prune), params=params)
        if f.method == "tpe":
            out["tpe_startup"] = f.tpe_startup
        out["base"] = self.base
        return out


def check_files(cfg: Config) -> None:
    """The data set's files are there (or will be downloaded): else one line now, not one per trial."""
    from ..data import DATASETS, files_error

    entry = DATASETS[cfg.data.name]
    missing = entry.missing(cfg.data)
    if missing and not cfg.data.download:
        fetch = f"`regbench data fetch {cfg.data.name}` gets them (or set data.download: true); " if entry.fetch else ""
        raise files_error(
            cfg.data.name, entry.files(cfg.data), missing, f"{fetch}`regbench datasets` shows what goes where"
        )


def load_sweep(source: str | Path | dict[str, Any], *, name: str | None = None, resolve: bool = True) -> Sweep:
    """Read and validate a sweep file (or a dict); raises ConfigError (one line: file, key path, what is allowed).

    `resolve=False` reads the base config without resolving it (no registry names, no model built, no torch):
    for a sweep folder's own `sweep.yaml`, whose base was resolved when the sweep started (`sweep --status`)."""
    if isinstance(source, dict):
        raw, label, folder, default_name = source, "<sweep>", Path.cwd(), "sweep"
    else:
        path = Path(source)
        label, folder = str(source), path.parent
        raw = read_yaml_file(path, "a sweep YAML file")
        default_name = re.sub(r"[^A-Za-z0-9._-]", "_", path.stem) or "sweep"
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a mapping with base: and params:, got {describe(raw)}", source=label)
    try:
        f = parse(SweepFile, raw)
        params = parse_params(f)
        sweep_name = name or f.name or default_name
        require(
            NAME_RE.fullmatch(sweep_name) is not None and len(sweep_name) <= 80,
            "name",
            "must be letters, digits, '.', '_' or '-' (no path separators), at most 80 characters",
            sweep_name,
        )
    except ConfigError as e:
        raise ConfigError(e.detail, source=label, path=e.path) from None
    except FieldError as e:
        raise ConfigError(str(e), source=label, path=e.field) from None
    base_cfg = load_base(f, label, folder, load_config if resolve else read_config)
    trials = check_method(f, params, label)
    base = base_cfg.to_dict()
    identity_data = {
        "base": {k: v for k, v in base.items() if k != "name"},
        "params": {k: to_plain(s) for k, s in params.items()},
        "method": f.method,
        "trials": trials,
        "seeds": f.seeds,
        "seed": f.seed,
        "metric": f.metric,
        "direction": f.direction or METRICS[f.metric][1],
        "tpe_startup": f.tpe_startup if f.method == "tpe" else None,
    }
    identity = hashlib.sha256(json.dumps(identity_data, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return Sweep(sweep_name, label, f, base, base_cfg, params, trials, identity)


def parse_params(f: SweepFile) -> dict[str, ParamSpec]:
    if not isinstance(f.params, dict) or not f.params:
        raise ConfigError(
            "expected a mapping of config keys to {values: [...]}, {choices: [...]}, {low, high, log} or a list",
            path="params",
        )
    params = {}
    for key, spec in f.params.items():
        if not isinstance(key, str) or not KEY_RE.fullmatch(key):
            raise ConfigError("expected a dotted config key such as optimizer.lr", path=f"params.{key}")
        if key == "name":
            raise ConfigError("the runs are named by the sweep (<sweep>-t007); it cannot vary", path="params.name")
        if isinstance(spec, list):
            spec = {"values": spec}
        if not isinstance(spec, dict):
            raise ConfigError(
                f"expected {{values: [...]}}, {{choices: [...]}}, {{low, high, log}} or a list, got {describe(spec)}",
                path=f"params.{key}",
            )
        params[key] = parse(ParamSpec, spec, f"params.{key}")
    for key in params:  # model.layers and model.layers[2].keep_prob: which value would a trial get?
        for other in params:
            if key.startswith((other + ".", other + "[")):
                raise ConfigError(
                    f"lies inside params.{other}, which replaces it; vary one of them", path=f"params.{key}"
                )
    for key in f.set or {}:
        covering = next((p for p in params if str(key).startswith((p + ".", p + "["))), None)
        if covering is not None:
            raise ConfigError(f"params.{covering} replaces it in every trial; set it there", path=f"set.{key}")
    return params


def load_base(f: SweepFile, label: str, folder: Path, load=load_config) -> Config:
    overrides = f.set if f.set is not None else {}
    if not isinstance(overrides, dict):
        raise ConfigError(
            f"expected a mapping of dotted keys to values, got {describe(overrides)}", source=label, path="set"
        )
    for key in overrides:
        if not isinstance(key, str) or not KEY_RE.fullmatch(key):
            raise ConfigError("expected a dotted config key such as train.epochs", source=label, path=f"set.{key}")
    if isinstance(f.base, str):
        path = Path(f.base) if Path(f.base).is_absolute() else folder / f.base
        try:
            return load(path, overrides=overrides)
        except ConfigError as e:
            if e.detail == "file not found" and e.path is None:
                raise ConfigError(f"config file {path} not found", source=label, path="base") from None
            key = override_at(e.path, overrides)
            if key is not None:
                raise ConfigError(e.detail, source=label, path=f"set.{key}") from None
            raise
    if isinstance(f.base, dict):
        try:
            return load(f.base, overrides=overrides)
        except ConfigError as e:
            where = override_at(e.path, overrides)
            path = f"set.{where}" if where else "base" + (f".{e.path}" if e.path else "")
            raise ConfigError(e.detail, source=label, path=path) from None
    raise ConfigError(
        f"expected a config file path or an inline config mapping, got {describe(f.base)}", source=label, path="base"
    )


def check_method(f: SweepFile, params: dict[str, ParamSpec], label: str) -> int:
    """The number of trials; ranges in a grid, a missing `trials` and a direction against the metric are errors."""
    if f.direction is not None and f.direction != METRICS[f.metric][1]:
        better = "higher" if METRICS[f.metric][1] == "maximize" else "lower"
        raise ConfigError(
            f"{f.metric} is better {better}: use {METRICS[f.metric][1]} (or leave direction out)",
            source=label,
            path="direction",
        )
    if f.method == "grid":
        for key, spec in params.items():
            if spec.options is None:
                raise ConfigError(
                    "a grid needs a list of values; {low, high} ranges are for method random or tpe",
                    source=label,
                    path=f"params.{key}",
                )
        n = math.prod(len(s.options) for s in params.values())
        if n > 100_000:
            raise ConfigError(f"the grid has {n:,} points; at most 100,000", source=label, path="params")
        if f.trials is not None and f.trials != n:
            raise ConfigError(
                f"a grid runs all its {n} points; leave trials out or set it to {n}", source=label, path="trials"
            )
        return n
    if f.trials is None:
        raise ConfigError(f"method {f.method} needs trials: N (how many points to try)", source=label, path="trials")
    return f.trials
