"""A sweep's state: every trial as a `TrialView` (from its study, or from `sweep.json`), ranked, as the book's lines.

`views_from_study` turns the study's Optuna trials into one view per slot; `SweepReport` ranks them, counts
them and tabulates the best; `sweep.json` (the index) is that report written whole after every change, so
`sweep_status` can show a sweep whose storage it cannot reach.
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import RegbenchError
from ..core.files import atomic_write, file_lock
from ..core.safeload import LimitError, load_json_bounded, read_limited
from .study import ERROR, OWNER, SLOT, STATUS, VALUES, StudyError, SweepStudy, decode, default_storage
from .sweep_spec import INDEX, LOCK, METRICS, SPEC, Sweep, SweepError, load_sweep
from .sweep_text import labels, metric_text, params_text, short_error

HEADER = "===== Hyper-Parameter Optimization Result ====="


# ----------------------------------------------------------------------------------------------- the book's lines
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
    """The run directories of trial `slot` on this machine: {seed, dir, status} per seed that has one."""
    runs = []
    for k in range(1, sweep.file.seeds + 1):
        d = sweep_dir / sweep.run_dir(slot, k)
        if not d.is_dir():
            continue
        try:
            summary = load_json_bounded(read_limited(d / "summary.json"), str(d / "summary.json"))
            status = str(summary.get("status", "unknown")) if isinstance(summary, dict) else "damaged"
        except LimitError:
            status = "damaged"
        except (OSError, ValueError, RegbenchError):
            status = "starting"
        seed = sweep.seed_of(params, k) if params is not None else None
        runs.append({"seed": seed, "dir": d.name, "status": status})
    return runs


def views_from_study(sweep: Sweep, trials: list[Any], sweep_dir: Path) -> list[TrialView]:
    """Every slot's latest Optuna trial (a re-enqueued slot has several) as a TrialView."""
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
            view.values = list(ft.user_attrs.get(VALUES) or [])
            if len(view.values) > 1:
                view.std = statistics.stdev(view.values)
            view.error = ft.user_attrs.get(ERROR)
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
        cols += [
            c for c in ("test_acc", "best_val_acc", "train_acc", "gap", "train_s_share", "status") if c not in cols
        ]
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
    """A sweep folder's `sweep.json`; SweepError if there is none or it is not a sweep index."""
    file = sweep_dir / INDEX
    if not file.is_file():
        raise SweepError(f"{sweep_dir}: not a sweep directory (no {INDEX})")
    try:
        data = load_json_bounded(read_limited(file, "a sweep index"), str(file))
    except (OSError, ValueError, RegbenchError) as e:
        raise SweepError(f"{file}: unreadable ({getattr(e, 'detail', None) or e.__class__.__name__})") from None
    if not isinstance(data, dict) or "identity" not in data:
        raise SweepError(f"{file}: not a regbench sweep index")
    return data


# ----------------------------------------------------------------------------------------------- reading a sweep folder
def sweep_status(sweep_dir: str | Path, storage: str | None = None) -> SweepReport:
    """The state of a sweep folder: from its study when the storage is reachable (every machine's trials),
    else from its `sweep.json` (this machine's last view)."""
    sweep_dir = Path(sweep_dir)
    index = read_index(sweep_dir)
    sweep = load_sweep(sweep_dir / SPEC, resolve=False)  # resolved when the sweep began: no torch needed
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
