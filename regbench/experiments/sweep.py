"""Sweeps: a base config, a few dotted keys to vary, and every trial trained as a normal run directory.

A sweep file names a `base` config (a path relative to the sweep file, or an inline mapping) and `params`,
dotted config keys mapped to `{values: [...]}` (a grid axis; `choices` is a synonym), `{low, high, log}`
ranges (random and TPE search) or a plain list (= values). `method: grid` runs every combination;
`random` draws `trials` points from the sweep's `seed` (trial t is always the same point); `tpe` lets
Optuna's TPE sampler propose each point from the finished ones. Each point is trained `seeds` times (the
base seed, +1, …); its metric is the mean over its seeds.

`run_sweep` writes `<out>/<name>/`: one run directory per trial and seed (`<name>-t007-s1`), `sweep.yaml`
(the resolved sweep, base config inline), `sweep.json` (the index: trial → params → run dirs → status →
metric) and, by default, `study.db`, the SQLite Optuna study every worker draws its trials from (see
`regbench.experiments.study`). Running it again continues: finished trials are kept, unfinished ones are resumed from
their checkpoints. `--storage URL` puts the study in any SQLAlchemy database, so processes on several
machines running the same command share one sweep.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import re
import statistics
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..config import KEY_RE, NAME_RE, Config, override_at
from ..core.errors import ConfigError, RegbenchError
from ..core.files import atomic_write, file_lock
from ..core.schema import describe, parse, read_yaml_file, require, to_plain
from ..resolve import load_config
from ..runner import RunResult, RunTask, run_trials

Method = Literal["grid", "random", "tpe"]
Metric = Literal["val_acc", "best_val_acc", "test_acc", "val_loss", "test_loss"]
METRICS = {  # the label the book prints, and which way is better
    "val_acc": ("val acc", "maximize"),  # the last epoch's validation accuracy (the homework's val_acc_list[-1])
    "best_val_acc": ("best val acc", "maximize"),  # the best epoch's
    "test_acc": ("test acc", "maximize"),
    "val_loss": ("val loss", "minimize"),  # the last epoch's
    "test_loss": ("test loss", "minimize"),
}
LABELS = {"optimizer.lr": "lr", "regularizer.l2_decay": "weight decay", "optimizer.weight_decay": "weight decay"}
INDEX, SPEC, STUDY_DB, LOCK = "sweep.json", "sweep.yaml", "study.db", ".sweep.lock"
HEADER = "===== Hyper-Parameter Optimization Result ====="
DEFAULT_STACK = 32  # runs per stacked model in a sweep (`--stack K`; memory bounds it too)


class SweepError(RegbenchError):
    """A sweep directory that does not fit the sweep (another sweep's, another storage's), or is unreadable."""


class SweepInterrupted(RegbenchError):
    """Ctrl-C: the running trials were stopped cleanly and will continue when the same command runs again."""

    exit_code = 130


# ----------------------------------------------------------------------------------------------- the file
@dataclass(frozen=True)
class ParamSpec:
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
    type: Literal["none", "median"] = "median"  # median: stop a trial whose val acc is below the median so far
    startup_trials: int = 5  # trials that finish before anything is pruned (Optuna's n_startup_trials)
    warmup_epochs: int = 0  # epochs of every trial that are never pruned (n_warmup_steps)

    def __post_init__(self):
        require(self.startup_trials >= 0, "startup_trials", "must be ≥ 0", self.startup_trials)
        require(self.warmup_epochs >= 0, "warmup_epochs", "must be ≥ 0", self.warmup_epochs)


@dataclass(frozen=True)
class SweepFile:
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


def load_sweep(source: str | Path | dict[str, Any], *, name: str | None = None) -> Sweep:
    """Read and validate a sweep file (or a dict); raises ConfigError (one line: file, key path, what is allowed)."""
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
    except Exception as e:
        from ..core.schema import FieldError

        if isinstance(e, FieldError):
            raise ConfigError(str(e), source=label, path=e.field) from None
        raise
    base_cfg = load_base(f, label, folder)
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


def load_base(f: SweepFile, label: str, folder: Path) -> Config:
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
            return load_config(path, overrides=overrides)
        except ConfigError as e:
            if e.detail == "file not found" and e.path is None:
                raise ConfigError(f"config file {path} not found", source=label, path="base") from None
            key = override_at(e.path, overrides)
            if key is not None:
                raise ConfigError(e.detail, source=label, path=f"set.{key}") from None
            raise
    if isinstance(f.base, dict):
        try:
            return load_config(f.base, overrides=overrides)
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


# ----------------------------------------------------------------------------------------------- the book's lines
def labels(keys: Any) -> dict[str, str]:
    """Short names for dotted keys: `optimizer.lr` → lr, the L2 strengths → weight decay, else the last part
    (the full key where two would read alike)."""
    short = {k: LABELS.get(k, k.rsplit(".", 1)[-1]) for k in keys}
    counts = Counter(short.values())
    return {k: s if counts[s] == 1 else k for k, s in short.items()}


def value_text(v: Any) -> str:
    """Numbers as Python prints them (the homework's `str(lr)`), lists in the book's flow notation."""
    if isinstance(v, bool) or v is None:
        return json.dumps(v)
    if isinstance(v, (int, float, str)):
        return str(v)
    import yaml

    return yaml.safe_dump(v, default_flow_style=True, sort_keys=False, width=10_000).strip()


def params_text(params: dict[str, Any] | None, names: dict[str, str]) -> str:
    if params is None:
        return "(proposed by TPE when it starts)"
    return ", ".join(f"{names.get(k, k)}:{value_text(v)}" for k, v in params.items())


def metric_text(value: float | None, std: float | None = None) -> str:
    """`0.73` as the homework prints a 100-sample accuracy (rounded to 4 decimals); `0.7333±0.0115` over seeds."""
    if value is None or not math.isfinite(value):
        return "-"
    text = str(round(value, 4))
    return f"{text}±{round(std, 4)}" if std is not None else text


def trial_line(view: TrialView, sweep: Sweep) -> str:
    """`val acc:0.65 | lr:0.004033105443126092, weight decay:3.7623876422381616e-06` (the homework's line)."""
    label = METRICS[sweep.metric][0]
    names = labels(sweep.params)
    if view.status == "completed":
        return f"{label}:{metric_text(view.value, view.std)} | {params_text(view.params, names)}"
    why = f" ({short_error(view.error)})" if view.error else ""
    return f"{view.status} | {params_text(view.params, names)}{why}"


def best_line(rank: int, view: TrialView, sweep: Sweep) -> str:
    """`Best-1(val acc:0.73) | lr:0.008725857704941933, weight decay:5.3321135380693484e-08`."""
    label = METRICS[sweep.metric][0]
    return (
        f"Best-{rank}({label}:{metric_text(view.value, view.std)}) | {params_text(view.params, labels(sweep.params))}"
    )


def short_error(error: str) -> str:
    text = " ".join(str(error).split())
    text = re.sub(r"^[A-Za-z0-9._-]+-t\d+: ", "", text)  # the run name the trainer puts first
    text = text.split("; the run is marked diverged")[0]
    return text if len(text) <= 120 else text[:117] + "..."


# ----------------------------------------------------------------------------------------------- trial views
@dataclass
class TrialView:
    """One trial (a point, over its seeds) as the index and the ranking show it."""

    slot: int
    key: str
    params: dict[str, Any] | None
    status: str  # pending | running | completed | pruned | diverged | failed | interrupted
    value: float | None = None  # the metric: the mean over the seeds
    std: float | None = None  # the sample std over the seeds (None for one seed)
    values: list[float] = field(default_factory=list)
    error: str | None = None
    host: str | None = None
    optuna_trials: list[int] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)  # local run directories: {seed, dir, status}

    def to_dict(self) -> dict[str, Any]:
        return {
            "trial": self.slot,
            "key": self.key,
            "params": self.params,
            "status": self.status,
            "metric": self.value,
            "std": self.std,
            "values": self.values,
            "runs": self.runs,
            "host": self.host,
            "optuna_trials": self.optuna_trials,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrialView:
        return cls(
            d["trial"], d["key"], d.get("params"), d.get("status", "pending"), d.get("metric"), d.get("std"),
            d.get("values") or [], d.get("error"), d.get("host"), d.get("optuna_trials") or [], d.get("runs") or [],
        )  # fmt: skip


def local_runs(sweep: Sweep, sweep_dir: Path, slot: int, params: dict[str, Any] | None) -> list[dict[str, Any]]:
    runs = []
    for k in range(1, sweep.file.seeds + 1):
        d = sweep_dir / sweep.run_dir(slot, k)
        if not d.is_dir():
            continue
        try:
            status = json.loads((d / "summary.json").read_text(encoding="utf-8")).get("status", "unknown")
        except (OSError, ValueError):
            status = "starting"
        seed = sweep.seed_of(params, k) if params is not None else None
        runs.append({"seed": seed, "dir": d.name, "status": status})
    return runs


def views_from_study(sweep: Sweep, trials: list[Any], sweep_dir: Path) -> list[TrialView]:
    """Every slot's latest Optuna trial (a re-enqueued slot has several) as a TrialView."""
    from .study import OWNER, SLOT, STATUS, decode

    by_slot: dict[int, list[Any]] = {}
    for ft in trials:
        if SLOT in ft.user_attrs:
            by_slot.setdefault(int(ft.user_attrs[SLOT]), []).append(ft)
    fixed = sweep.points()
    views = []
    for slot in range(sweep.trials):
        history = sorted(by_slot.get(slot, []), key=lambda ft: ft.number)
        params: dict[str, Any] | None = fixed[slot] if slot < len(fixed) else None
        view = TrialView(slot, sweep.key(slot), params, "pending")
        if history:
            ft = history[-1]
            raw = {**ft.system_attrs.get("fixed_params", {}), **ft.params}
            if all(k in raw for k in sweep.params):
                view.params = {k: decode(spec, raw[k]) for k, spec in sweep.params.items()}
            state = ft.state.name
            if state == "WAITING":
                view.status = "interrupted" if len(history) > 1 else "pending"
            elif state == "RUNNING":
                view.status = "running"
            elif state == "COMPLETE":
                view.status, view.value = "completed", ft.value
            elif state == "PRUNED":
                view.status = "pruned"
            else:
                view.status = str(ft.user_attrs.get(STATUS, "failed"))
            view.values = list(ft.user_attrs.get("regbench_values") or [])
            if len(view.values) > 1:
                view.std = statistics.stdev(view.values)
            view.error = ft.user_attrs.get("regbench_error")
            view.host = (ft.user_attrs.get(OWNER) or {}).get("host")
            view.optuna_trials = [h.number for h in history]
        view.runs = local_runs(sweep, sweep_dir, slot, view.params)
        views.append(view)
    return views


def ranked(views: list[TrialView], sweep: Sweep) -> list[TrialView]:
    """Completed trials, best first (ties: the earlier trial first)."""
    done = [v for v in views if v.status == "completed" and v.value is not None and math.isfinite(v.value)]
    sign = -1 if sweep.direction == "maximize" else 1
    return sorted(done, key=lambda v: (sign * v.value, v.slot))


# ----------------------------------------------------------------------------------------------- the report
@dataclass
class SweepReport:
    """A sweep's state: every trial, and where its files are; `ranking_lines`/`compare` format it."""

    sweep: Sweep
    path: Path
    views: list[TrialView]
    storage: str | None = None  # masked URL (None: the default sqlite file in the sweep folder)
    seconds: float | None = None  # wall time of this invocation
    notes: list[str] = field(default_factory=list)

    @property
    def counts(self) -> Counter:
        return Counter(v.status for v in self.views)

    def ranked(self) -> list[TrialView]:
        return ranked(self.views, self.sweep)

    def ranking_lines(self, top: int = 20) -> list[str]:
        """The homework's result block: the header, then `Best-k(val acc:…) | lr:…, weight decay:…`."""
        return [HEADER] + [best_line(i, v, self.sweep) for i, v in enumerate(self.ranked()[:top], 1)]

    def count_line(self) -> str:
        c = self.counts
        order = ("completed", "pruned", "diverged", "failed", "interrupted", "running", "pending")
        parts = [f"{c[s]} {s}" for s in order if c[s]]
        return f"{self.sweep.trials} trials: {', '.join(parts)}"

    def top_runs(self, k: int) -> list[Path]:
        """The local run directories of the best `k` trials, in ranking order."""
        dirs = []
        for v in self.ranked()[:k]:
            dirs += [self.path / r["dir"] for r in v.runs if r.get("status") == "completed"]
        return dirs

    def compare(self, k: int = 5, plot: str | Path | None = None):
        """The best `k` trials as a `regbench.compare` table (seeds grouped: mean ± std), or None when none of
        them ran on this machine. `plot` also draws their learning curves."""
        from ..analysis.compare import COLUMNS, compare

        dirs = self.top_runs(k)
        if not dirs:
            return None
        metric = self.sweep.metric if self.sweep.metric in ("val_acc", "test_loss") else None
        cols = ["name", "n", *self.sweep.params, *([metric] if metric else [])]
        cols += [c for c in ("test_acc", "best_val_acc", "train_acc", "gap", "train_s", "status") if c not in cols]
        cols = [c for c in cols if c in COLUMNS or c in self.sweep.params or c == metric]
        comp = compare(dirs, columns=cols, plot=plot)
        rank = {str(d.resolve()): i for i, d in enumerate(dirs)}
        comp.rows.sort(key=lambda row: min(rank.get(str(r.path.resolve()), 1 << 30) for r in row.runs))
        return comp

    def to_index(self) -> dict[str, Any]:
        s = self.sweep
        return {
            "sweep": s.name,
            "identity": s.identity,
            "study": s.study_name,
            "storage": self.storage,
            "method": s.file.method,
            "metric": s.metric,
            "direction": s.direction,
            "trials": s.trials,
            "seeds": s.file.seeds,
            "params": list(s.params),
            "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "counts": dict(self.counts),
            "best": [v.slot for v in self.ranked()[:20]],
            "trial_list": [v.to_dict() for v in self.views],
        }


def write_index(report: SweepReport, locked: bool = False) -> None:
    """`sweep.json`, written whole and renamed (several processes may share the folder: a lock orders them)."""

    data = json.dumps(_finite(report.to_index()), indent=1, ensure_ascii=False) + "\n"
    with contextlib.nullcontext() if locked else file_lock(report.path / LOCK):
        atomic_write(report.path / INDEX, data.encode())


def _finite(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_finite(x) for x in v]
    return v


def read_index(sweep_dir: Path) -> dict[str, Any]:
    file = sweep_dir / INDEX
    if not file.is_file():
        raise SweepError(f"{sweep_dir}: not a sweep directory (no {INDEX})")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SweepError(f"{file}: unreadable ({e.__class__.__name__})") from None
    if not isinstance(data, dict) or "identity" not in data:
        raise SweepError(f"{file}: not a regbench sweep index")
    return data


# ----------------------------------------------------------------------------------------------- running
def default_storage(sweep_dir: Path) -> str:
    return f"sqlite:///{(sweep_dir / STUDY_DB).resolve()}"


def prepare_dir(sweep: Sweep, sweep_dir: Path, storage: str | None) -> None:
    """Make the sweep folder, or check that an existing one is this sweep's (same file, same storage)."""

    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SweepError(f"{sweep_dir}: cannot create the sweep directory ({e.strerror or e})") from None
    with file_lock(sweep_dir / LOCK):  # two processes starting the same sweep folder at once
        _prepare_dir(sweep, sweep_dir, storage)


def _prepare_dir(sweep: Sweep, sweep_dir: Path, storage: str | None) -> None:
    import yaml

    from .study import masked

    if (sweep_dir / INDEX).is_file():
        index = read_index(sweep_dir)
        if index["identity"] != sweep.identity:
            raise SweepError(
                f"{sweep_dir} holds another sweep (made from a different version of the sweep file or its base"
                " config); use --out DIR, or remove that folder"
            )
        want = masked(storage) if storage else None
        if index.get("storage") != want:
            was = index.get("storage") or f"the default {STUDY_DB} in that folder"
            raise SweepError(f"{sweep_dir} was run with storage {was}; pass the same --storage (or use another --out)")
        return
    if any(p.name not in (LOCK, SPEC, STUDY_DB, STUDY_DB + ".lock") for p in sweep_dir.iterdir()):
        raise SweepError(f"{sweep_dir} exists and is not a sweep directory (no {INDEX}); use another --out")
    text = yaml.safe_dump(sweep.to_dict(), sort_keys=False, allow_unicode=True, default_flow_style=None, width=120)
    atomic_write(sweep_dir / SPEC, text.encode())
    write_index(SweepReport(sweep, sweep_dir, [], masked(storage) if storage else None), locked=True)


@dataclass
class _Slot:
    """A trial this process took: its runs (one per seed) and their results."""

    claim: Any
    tasks: list[RunTask]
    results: dict[str, RunResult] = field(default_factory=dict)
    dispatched: set[str] = field(default_factory=set)
    cancelled: bool = False
    finished: bool = False

    def done(self) -> bool:
        all_sent = self.cancelled or len(self.dispatched) == len(self.tasks)
        return all_sent and all(k in self.results for k in self.dispatched)


def run_metric(path: Path, metric: str) -> float | None:
    """A finished run's metric: val_acc and val_loss of its last epoch, best_val_acc, test_acc, test_loss."""
    from ..rundir import load_run

    try:
        run = load_run(path)
    except RegbenchError:
        return None
    if metric == "val_loss":
        value = run.metrics[-1].get("val_loss") if run.metrics else None
    else:
        value = run.summary.get(metric)
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def outcome(slot: _Slot, metric: str) -> tuple[str, list[float], str | None]:
    """A trial's status (the worst of its seeds'), its per-seed metric values and the first error."""
    results = [slot.results[t.key] for t in slot.tasks if t.key in slot.results]
    statuses = {r.status for r in results}
    error = next((r.error for r in results if r.error and r.status != "completed"), None)
    if "interrupted" in statuses or len(results) < len(slot.tasks) and not slot.cancelled:
        return "interrupted", [], None
    for status in ("failed", "diverged", "pruned"):
        if status in statuses:
            return status, [], error
    values = [run_metric(Path(r.path), metric) for r in results]
    if any(v is None for v in values):
        return "failed", [], f"the runs have no {metric} (no validation split? set data.split.val)"
    return "completed", values, None  # type: ignore[return-value]


def run_sweep(
    sweep: Sweep,
    out: str | Path = "sweeps",
    *,
    workers: int = 1,
    storage: str | None = None,
    say=print,
    stack: int = DEFAULT_STACK,
) -> SweepReport:
    """Run (or continue) `sweep` into `<out>/<name>/` on `workers` processes (0: in this one).

    Trials (and their seeds) whose configs differ only in per-member values (lr, weight decay, L2/L1,
    dropout keep_prob, noise std, seed) train side by side, up to `stack` runs per stacked model (1: one
    at a time); the rest run one by one. A sweep with `prune` trains one run at a time: the pruner
    compares a trial with finished ones, and trials side by side finish together.

    Prints one line per finished trial in the homework's format through `say`. Several processes (on any
    machine, with a shared `storage` URL) may run the same sweep at once; each takes the next waiting
    trial. Returns the report (all trials, from the study); raises SweepInterrupted on Ctrl-C after
    marking the running trials for continuation.
    """
    from .study import Reporter, SweepStudy, masked

    sweep.validate()
    sweep_dir = Path(out) / sweep.name
    prepare_dir(sweep, sweep_dir, storage)
    url = storage or default_storage(sweep_dir)
    study = SweepStudy(sweep, url)
    study.ensure(say)
    study.reap()
    report = SweepReport(
        sweep, sweep_dir, views_from_study(sweep, study.trials(), sweep_dir), storage and masked(storage)
    )
    write_index(report)

    t0 = time.monotonic()
    slots: list[_Slot] = []
    slot_of: dict[str, _Slot] = {}
    pending: deque[RunTask] = deque()
    state = {"last_reap": time.monotonic(), "waiting_said": False}
    prune = sweep.prune
    loss = METRICS[sweep.metric][1] == "minimize"

    def refresh() -> None:
        report.views = views_from_study(sweep, study.trials(), sweep_dir)
        write_index(report)

    def finish(slot: _Slot) -> None:
        status, values, error = outcome(slot, sweep.metric)
        value = statistics.fmean(values) if values else None
        study.finish(slot.claim.number, slot.claim.trial_id, status, value, values or None, error)
        slot.finished = True
        if status != "interrupted":
            std = statistics.stdev(values) if len(values) > 1 else None
            line = TrialView(slot.claim.slot, sweep.key(slot.claim.slot), slot.claim.params, status, value, std)
            line.error = error
            say(trial_line(line, sweep))
        refresh()

    def take(claim) -> _Slot | None:
        tasks = []
        try:
            for k in range(1, sweep.file.seeds + 1):
                cfg = sweep.trial_config(claim.params, claim.slot, k)
                reporter = None
                if prune is not None:
                    last = cfg.train.epochs if cfg.train.iterations is None else None
                    reporter = Reporter(url, sweep.study_name, claim.trial_id, prune, loss, k == 1, last)
                path = str(sweep_dir / sweep.run_dir(claim.slot, k))
                tasks.append(RunTask(sweep.run_dir(claim.slot, k), cfg.to_dict(), path, reporter))
        except ConfigError as e:  # a TPE proposal the config rejects: this trial failed, the sweep goes on
            study.finish(claim.number, claim.trial_id, "failed", error=str(e))
            say(trial_line(TrialView(claim.slot, sweep.key(claim.slot), claim.params, "failed", error=str(e)), sweep))
            return None
        slot = _Slot(claim, tasks)
        slots.append(slot)
        for t in tasks:
            slot_of[t.key] = slot
        refresh()
        return slot

    def tasks():
        while True:
            if pending:
                task = pending.popleft()
                slot_of[task.key].dispatched.add(task.key)
                yield task
                continue
            claim = study.claim()
            if claim is not None:
                slot = take(claim)
                if slot is not None:
                    pending.extend(slot.tasks)
                continue
            others = study.running_elsewhere()
            if not others:
                return
            if time.monotonic() - state["last_reap"] > 5:
                state["last_reap"] = time.monotonic()
                study.reap()
            if not state["waiting_said"]:
                state["waiting_said"] = True
                where = ", ".join(
                    f"{sweep.key(int(ft.user_attrs.get('regbench_trial', ft.number)))}"
                    f" on {(ft.user_attrs.get('regbench_owner') or {}).get('host', '?')}"
                    for ft in others[:5]
                )
                say(f"waiting for {len(others)} trial(s) running in other processes ({where}) ...")
            yield None

    interrupted = False
    study.start_heartbeat()
    try:
        stack = 1 if prune is not None else stack
        with contextlib.closing(run_trials(tasks(), workers, stack=stack)) as results:
            for r in results:
                slot = slot_of[r.key]
                slot.results[r.key] = r
                if r.status in ("pruned", "failed", "diverged") and not slot.cancelled:
                    slot.cancelled = True  # its other seeds cannot change the verdict: do not start them
                    pending_keys = {t.key for t in slot.tasks} - slot.dispatched
                    kept = [t for t in pending if t.key not in pending_keys]
                    pending.clear()
                    pending.extend(kept)
                if slot.done() and not slot.finished:
                    finish(slot)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        study.stop_heartbeat()
        for slot in slots:
            if not slot.finished:
                with contextlib.suppress(Exception):
                    study.finish(slot.claim.number, slot.claim.trial_id, "interrupted")
                    slot.finished = True
        with contextlib.suppress(Exception):
            refresh()
    report.seconds = time.monotonic() - t0
    if interrupted:
        done = sum(v.status not in ("pending", "running", "interrupted") for v in report.views)
        raise SweepInterrupted(
            f"interrupted: {done} of {sweep.trials} trials finished; the stopped ones are kept and continue from"
            f" their last epoch when the same command runs again (sweep in {sweep_dir})"
        )
    return report


def sweep_status(sweep_dir: str | Path, storage: str | None = None) -> SweepReport:
    """The state of a sweep folder: from its study when the storage is reachable (every machine's trials),
    else from its `sweep.json` (this machine's last view)."""
    from .study import StudyError, SweepStudy

    sweep_dir = Path(sweep_dir)
    index = read_index(sweep_dir)
    sweep = load_sweep(sweep_dir / SPEC)
    if sweep.identity != index["identity"]:
        raise SweepError(f"{sweep_dir}: {SPEC} does not match {INDEX} (edited by hand?)")
    saved = index.get("storage")
    url = storage or (default_storage(sweep_dir) if saved is None else None if "***" in saved else saved)
    report = SweepReport(sweep, sweep_dir, [], saved)
    if url is not None:
        try:
            study = SweepStudy(sweep, url)
            report.views = views_from_study(sweep, study.trials(), sweep_dir)
            return report
        except (StudyError, KeyError) as e:
            report.notes.append(f"cannot read the study ({str(e).strip(chr(39))}); showing {INDEX}")
    else:
        report.notes.append(
            f"the storage has a password; pass --storage URL for every machine's trials, showing {INDEX}"
        )
    report.views = [TrialView.from_dict(d) for d in index.get("trial_list", [])]
    for v in report.views:
        v.runs = local_runs(sweep, sweep_dir, v.slot, v.params) or v.runs
    return report


def plan(sweep: Sweep, out: str | Path = "sweeps") -> list[str]:
    """`--dry-run`: what would run, one line per trial (with its status when the sweep folder has one)."""
    sweep.validate()
    sweep_dir = Path(out) / sweep.name
    known: dict[int, TrialView] = {}
    with contextlib.suppress(SweepError):
        index = read_index(sweep_dir)
        if index["identity"] == sweep.identity:
            known = {d["trial"]: TrialView.from_dict(d) for d in index.get("trial_list", [])}
    f = sweep.file
    what = {"grid": "grid", "random": "random search", "tpe": "TPE search (Optuna)"}[f.method]
    ranges = "; ".join(f"{labels(sweep.params)[k]} ∈ {s.describe()}" for k, s in sweep.params.items())
    seeds = f"{f.seeds} seed{'s' if f.seeds > 1 else ''}"
    lines = [
        f"{sweep.name}: {what}, {sweep.trials} trials × {seeds} = {sweep.trials * f.seeds} runs;"
        f" {sweep.metric} ({METRICS[sweep.metric][0]}), {sweep.direction}; {ranges}",
        f"runs in {sweep_dir}/{sweep.run_dir(0, 1)} …",
    ]
    names = labels(sweep.params)
    points = sweep.points()
    for slot in range(sweep.trials):
        v = known.get(slot)
        params = points[slot] if slot < len(points) else v.params if v else None
        status = f"  [{v.status}{' ' + metric_text(v.value, v.std) if v.value is not None else ''}]" if v else ""
        lines.append(f"{sweep.key(slot)}  {params_text(params, names)}{status}")
    return lines
