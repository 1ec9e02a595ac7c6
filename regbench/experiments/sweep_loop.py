"""Running a sweep: each worker process takes the study's next waiting trial and trains its seeds as run directories.

`run_sweep` writes `<out>/<name>/`: one run directory per trial and seed (`<name>-t007-s1`), `sweep.yaml`
(the resolved sweep, base config inline), `sweep.json` (the index: trial → params → run dirs → status →
metric) and, by default, `study.db`, the SQLite Optuna study every worker draws its trials from (see
`regbench.experiments.study`). Running it again continues: finished trials are kept, unfinished ones are
resumed from their checkpoints.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import ConfigError, RegbenchError
from ..core.files import atomic_write, file_lock
from ..core.values import first_head
from ..runner import RunResult, RunTask, run_trials
from .study import OWNER, SLOT, Claim, Reporter, SweepStudy, default_storage, masked
from .sweep_report import SweepReport, TrialView, read_index, trial_line, views_from_study, write_index
from .sweep_spec import INDEX, LOCK, METRICS, SPEC, STUDY_DB, Sweep, SweepError

DEFAULT_STACK = 32  # runs per stacked model in a sweep (`--stack K`; memory bounds it too)


class SweepInterrupted(RegbenchError):
    """Ctrl-C: the running trials were stopped cleanly and will continue when the same command runs again."""

    exit_code = 130


# ----------------------------------------------------------------------------------------------- the folder
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


# ----------------------------------------------------------------------------------------------- the run loop
Progress = Callable[[int, int, int], None]  # (done, total, failed): for a progress bar
INDEX_EVERY_S = 2.0  # sweep.json is this machine's view for --status without the study: a moment behind is fine


@dataclass
class _Slot:
    """A trial this process took: its runs (one per seed) and their results."""

    claim: Claim
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
        return first_head(run.metrics[-1].get("val_loss") if run.metrics else None)
    return first_head(run.summary.get(metric))


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
    progress: Progress | None = None,
) -> SweepReport:
    """Run (or continue) `sweep` into `<out>/<name>/` on `workers` processes (0: in this one).

    Trials (and their seeds) whose configs differ only in per-member values (lr, weight decay, L2/L1,
    dropout keep_prob, noise std, seed) train side by side, up to `stack` runs per stacked model (1: one
    at a time); the rest run one by one. A sweep with `prune` trains one run at a time: the pruner
    compares a trial with finished ones, and trials side by side finish together.

    Prints one line per finished trial in the homework's format through `say`, and calls `progress(done,
    total, failed)` at the start and after each trial this process finishes. Several processes (on any
    machine, with a shared `storage` URL) may run the same sweep at once; each takes the next waiting
    trial. Returns the report (all trials, from the study); raises SweepInterrupted on Ctrl-C after
    marking the running trials for continuation.
    """
    sweep.validate()
    if not str(out).strip():  # Path("") is the current directory
        raise SweepError('the output directory is empty (--out ""); give a folder, e.g. --out sweeps')
    sweep_dir = Path(out) / sweep.name
    prepare_dir(sweep, sweep_dir, storage)
    url = storage or default_storage(sweep_dir)
    study = SweepStudy(sweep, url)
    study.ensure(say)
    study.reap()
    with file_lock(sweep_dir / LOCK):  # trials failed by a dying worker continue from their checkpoints
        study.retry_lost()
    report = SweepReport(
        sweep, sweep_dir, views_from_study(sweep, study.trials(), sweep_dir), storage and masked(storage)
    )
    write_index(report)
    ended = [v for v in report.views if v.status not in ("pending", "running", "interrupted")]
    counts = {"done": len(ended), "failed": sum(v.status in ("failed", "diverged") for v in ended)}

    def tell(status: str | None = None) -> None:
        if status is not None:
            counts["done"] += 1
            counts["failed"] += status in ("failed", "diverged")
        if progress is not None:
            progress(counts["done"], sweep.trials, counts["failed"])

    tell()
    t0 = time.monotonic()
    slots: list[_Slot] = []
    slot_of: dict[str, _Slot] = {}
    pending: deque[RunTask] = deque()
    state = {"last_reap": time.monotonic(), "waiting_said": False, "indexed": time.monotonic()}
    prune = sweep.prune
    loss = METRICS[sweep.metric][1] == "minimize"

    def refresh(now: bool = False) -> None:
        """Re-read every trial and rewrite sweep.json: at most every INDEX_EVERY_S seconds while trials run
        (it reads the whole study, so once per trial would grow with the sweep), and always at the end."""
        if not now and time.monotonic() - state["indexed"] < INDEX_EVERY_S:
            return
        state["indexed"] = time.monotonic()
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
            tell(status)
        refresh()

    def take(claim: Claim) -> _Slot | None:
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
            tell("failed")
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
                    f"{sweep.key(int(ft.user_attrs.get(SLOT, ft.number)))}"
                    f" on {(ft.user_attrs.get(OWNER) or {}).get('host', '?')}"
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
            refresh(now=True)
    report.seconds = time.monotonic() - t0
    if interrupted:
        done = sum(v.status not in ("pending", "running", "interrupted") for v in report.views)
        raise SweepInterrupted(
            f"interrupted: {done} of {sweep.trials} trials finished; the stopped ones are kept and continue from"
            f" their last epoch when the same command runs again (sweep in {sweep_dir})"
        )
    return report
