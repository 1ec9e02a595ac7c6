"""A sweep's Optuna study: the shared list of trials that every worker process, on any machine, draws from.

Each trial of a sweep is a *slot*, enqueued once when the study is created: grid and random slots carry
their fixed parameters (computed from the sweep's seed), TPE slots carry none (the first `tpe_startup`
get fixed random points) and are filled by the TPE sampler when a worker takes them. A worker takes a slot
by moving it from WAITING to RUNNING, which the storage does atomically — so no slot runs twice:

- PostgreSQL/MySQL lock the row (`SELECT ... FOR UPDATE`, as Optuna does);
- SQLite has no row locks and Python's sqlite3 defers `BEGIN` to the first write, so Optuna's read-then-write
  could hand one slot to two processes; every SQLite transaction here starts with `BEGIN IMMEDIATE`
  (the whole database is locked for its few milliseconds), which makes it atomic too.

A slot whose worker stops (Ctrl-C, a killed process, a lost machine) is failed and enqueued again with the
same parameters and slot number, so whoever takes it next continues it — from its checkpoint if the run
directory is on that machine. Dead owners are found at once on the same host (their pid is gone), and
elsewhere by Optuna's heartbeat (no beat for `GRACE_S` seconds).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import Pruned, RegbenchError
from ..core.files import file_lock, pid_alive
from ..core.values import first_head
from .sweep_spec import STUDY_DB

if TYPE_CHECKING:
    import optuna

    from .sweep_spec import ParamSpec, PruneSpec, Sweep

SLOT = "regbench_trial"  # user attr: the slot (trial) number, kept by re-enqueued copies
OWNER = "regbench_owner"  # user attr: {"host", "pid"} of the sweep process running it
STATUS = "regbench_status"  # user attr: completed | pruned | diverged | failed | interrupted
VALUES = "regbench_values"  # user attr: the metric of each seed
ERROR = "regbench_error"  # user attr: the first error of a trial that did not complete (500 characters at most)
RETRY_OF = "regbench_retry_of"  # user attr of a re-enqueued copy: the Optuna trial number it continues
META = "regbench"  # study attr: {"sweep", "identity", "ready"} (ready: every slot is enqueued)
HEARTBEAT_S, GRACE_S = 10, 60  # a running slot beats every 10 s; 60 s without a beat → it is re-enqueued
READY_WAIT_S = 120  # a joining worker waits this long for the creator to finish enqueueing the slots
HOST = socket.gethostname()


class StudyError(RegbenchError):
    """The storage cannot be opened or the study does not fit the sweep."""


def import_optuna():
    try:
        import optuna
    except ImportError:
        raise StudyError("sweeps need optuna: pip install optuna") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message=".*[Hh]eartbeat.*")
    return optuna


def masked(url: str) -> str:
    """The URL with its password hidden (what is printed and written to sweep.json)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def default_storage(sweep_dir: Path) -> str:
    """The study's URL when no --storage is given: a SQLite file in the sweep folder."""
    return f"sqlite:///{(sweep_dir / STUDY_DB).resolve()}"


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL (None for other databases and in-memory SQLite)."""
    if not url.startswith("sqlite:"):
        return None
    from sqlalchemy.engine import make_url

    db = make_url(url).database
    return Path(db) if db and db != ":memory:" else None


# ----------------------------------------------------------------------------------------------- storage
_STORAGES: dict[tuple[str, bool], Any] = {}


def open_storage(url: str, heartbeat: bool = False):
    """An Optuna RDBStorage for `url` (any SQLAlchemy URL), cached per process; SQLite made atomic."""
    if (url, heartbeat) in _STORAGES:
        return _STORAGES[(url, heartbeat)]
    optuna = import_optuna()
    from sqlalchemy import event

    db = sqlite_file(url)
    kwargs: dict[str, Any] = {}
    if heartbeat:
        kwargs.update(heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S, heartbeat_stale_trial_callback=requeue)
    engine_kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite:") else {}
    last: Exception | None = None
    for attempt in range(5):  # two processes creating the same database's tables at once can collide
        try:
            with file_lock(db.with_name(db.name + ".lock") if db else None):
                if db:
                    db.parent.mkdir(parents=True, exist_ok=True)
                storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
            break
        except Exception as e:
            last = e
            time.sleep(0.5 * (attempt + 1))
    else:
        first = str(last).splitlines()[0] if str(last) else ""
        raise StudyError(f"--storage {masked(url)}: cannot open ({last.__class__.__name__}: {first})") from None
    if url.startswith("sqlite:"):
        engine = storage.engine

        @event.listens_for(engine, "connect")
        def _no_implicit_begin(dbapi_connection, record):
            dbapi_connection.isolation_level = None  # we emit BEGIN ourselves

        @event.listens_for(engine, "begin")
        def _begin_immediate(connection):
            connection.exec_driver_sql("BEGIN IMMEDIATE")  # lock first, then read: read-check-write is atomic

        engine.dispose()  # pooled connections made before the listeners are dropped
    _STORAGES[(url, heartbeat)] = storage
    return storage


# ----------------------------------------------------------------------------------------------- parameters
def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def encode(value: Any) -> Any:
    """Optuna's categorical choices must be scalars: a layer list is stored as its JSON text."""
    return value if _scalar(value) else json.dumps(value, sort_keys=True)


def distribution(spec: ParamSpec):
    optuna = import_optuna()
    d = optuna.distributions
    if spec.options is not None:
        return d.CategoricalDistribution([encode(v) for v in spec.options])
    if spec.type == "int":
        return d.IntDistribution(int(spec.low), int(spec.high), log=spec.log)
    return d.FloatDistribution(float(spec.low), float(spec.high), log=spec.log)


def decode(spec: ParamSpec, value: Any) -> Any:
    if spec.options is not None:
        for v in spec.options:
            if encode(v) == value:
                return v
    return value


def suggest(trial: optuna.Trial, key: str, spec: ParamSpec) -> Any:
    """The slot's value of `key`: its fixed value if it has one, else what the sampler proposes."""
    if spec.options is not None:
        return decode(spec, trial.suggest_categorical(key, [encode(v) for v in spec.options]))
    if spec.type == "int":
        return trial.suggest_int(key, int(spec.low), int(spec.high), log=spec.log)
    return trial.suggest_float(key, float(spec.low), float(spec.high), log=spec.log)


# ----------------------------------------------------------------------------------------------- the study
@dataclass
class Claim:
    """A slot this process took: its Optuna trial and the parameters it runs with."""

    trial_id: int
    number: int  # Optuna's trial number (a re-enqueued slot gets a new one)
    slot: int
    params: dict[str, Any]


@dataclass
class SweepStudy:
    sweep: Sweep
    url: str
    storage: Any = None
    beating: set[int] = field(default_factory=set)

    def __post_init__(self):
        self.optuna = import_optuna()
        self.storage = open_storage(self.url, heartbeat=True)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beat_thread: threading.Thread | None = None

    @property
    def name(self) -> str:
        return self.sweep.study_name

    def sampler(self):
        s = self.optuna.samplers
        if self.sweep.file.method == "tpe":
            # seeded per process: two workers with one seed would propose the same points
            seed = (self.sweep.file.seed * 1_000_003 + os.getpid() * 7919 + time.time_ns()) % 2**32
            return s.TPESampler(n_startup_trials=self.sweep.file.tpe_startup, seed=seed, constant_liar=True)
        return s.RandomSampler(seed=self.sweep.file.seed)  # never asked: every grid/random slot is fixed

    def pruner(self):
        return make_pruner(self.sweep.prune)

    def load(self) -> optuna.Study:
        """A fresh Study object: its storage cache (Optuna wraps the storage per study) holds every trial."""
        study = self.optuna.load_study(
            study_name=self.name, storage=self.storage, sampler=self.sampler(), pruner=self.pruner()
        )
        study.get_trials(deepcopy=False)  # fills the cache, which trials taken here must be in
        return study

    # ---- creating or joining
    def ensure(self, say=print) -> optuna.Study:
        """Create the study and enqueue every slot, or join the one another process made."""
        optuna = self.optuna
        direction = self.sweep.direction
        try:
            study = optuna.create_study(
                study_name=self.name, storage=self.storage, direction=direction, load_if_exists=False
            )
        except optuna.exceptions.DuplicatedStudyError:
            study = self.load()
            if study.direction.name.lower() != direction:
                raise StudyError(
                    f"study {self.name} in {masked(self.url)} has direction {study.direction.name}"
                ) from None
            self._wait_ready(study, say)
            return study
        study.set_user_attr(META, {"sweep": self.sweep.name, "identity": self.sweep.identity, "ready": False})
        fixed = self.sweep.fixed_points()
        for slot in range(self.sweep.trials):
            params = {k: encode(v) for k, v in fixed[slot].items()} if slot < len(fixed) else {}
            study.enqueue_trial(params, user_attrs={SLOT: slot}, skip_if_exists=False)
        study.set_user_attr(META, {"sweep": self.sweep.name, "identity": self.sweep.identity, "ready": True})
        return study

    def _wait_ready(self, study: optuna.Study, say) -> None:
        t0 = time.monotonic()
        told = False
        while not (study.user_attrs.get(META) or {}).get("ready"):
            if time.monotonic() - t0 > READY_WAIT_S:
                raise StudyError(
                    f"study {self.name} in {masked(self.url)} has no trial list after {READY_WAIT_S} s (its creator may"
                    f" have died while enqueueing); delete it (optuna delete-study --study-name {self.name}) and retry"
                )
            if not told:
                say(f"waiting for another process to enqueue the trials of study {self.name} ...")
                told = True
            time.sleep(1.0)
            study = self.load()

    # ---- taking slots
    def claim(self) -> Claim | None:
        """Take the next waiting slot (atomically; None when none is waiting) and fix its parameters.

        The waiting slots are found with one indexed query and a grid or random slot's parameters read from
        the slot itself, so a claim costs the same in a study of 100 trials and of 10,000; only TPE loads the
        finished trials (its sampler learns from them)."""
        optuna = self.optuna
        TrialState = optuna.trial.TrialState
        st = self.storage
        sid = st.get_study_id_from_name(self.name)
        for tid, number in self.waiting(sid):
            try:
                if not st.set_trial_state_values(tid, state=TrialState.RUNNING):
                    continue  # another process took it first
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
            st.set_trial_user_attr(tid, OWNER, {"host": HOST, "pid": os.getpid()})
            self.beat(tid)
            slot = int(st.get_trial_user_attrs(tid).get(SLOT, number))
            try:
                params = self.fixed_params(tid) if self.sweep.file.method != "tpe" else None
                if params is None:
                    study = self.load()  # fresh: the sampler sees every finished trial
                    trial = optuna.Trial(study, tid)
                    params = {k: suggest(trial, k, spec) for k, spec in self.sweep.params.items()}
            except Exception as e:  # a sampler problem: fail this slot, do not stop the sweep
                self.finish(number, tid, "failed", error=f"{e.__class__.__name__}: {e}")
                continue
            return Claim(tid, number, slot, params)
        return None

    def waiting(self, study_id: int, limit: int = 16) -> list[tuple[int, int]]:
        """(trial id, number) of the first waiting trials, oldest first: one query, not a scan of every trial."""
        from optuna.storages._rdb.models import TrialModel
        from sqlalchemy import select

        TrialState = self.optuna.trial.TrialState
        query = (
            select(TrialModel.trial_id, TrialModel.number)
            .where(TrialModel.study_id == study_id, TrialModel.state == TrialState.WAITING)
            .order_by(TrialModel.trial_id)
            .limit(limit)
        )
        with self.storage.engine.connect() as conn:
            return [(int(tid), int(n)) for tid, n in conn.execute(query)]

    def fixed_params(self, trial_id: int) -> dict[str, Any] | None:
        """A slot's enqueued parameters, recorded on its trial as `suggest` would; None if any is missing."""
        fixed = self.storage.get_trial_system_attrs(trial_id).get("fixed_params", {})
        if any(k not in fixed for k in self.sweep.params):
            return None
        params = {}
        for key, spec in self.sweep.params.items():
            dist = distribution(spec)
            self.storage.set_trial_param(trial_id, key, dist.to_internal_repr(fixed[key]), dist)
            params[key] = decode(spec, fixed[key])
        return params

    # ---- heartbeats
    def beat(self, trial_id: int) -> None:
        with self._lock:
            self.beating.add(trial_id)
        with contextlib.suppress(Exception):
            self.storage.record_heartbeat(trial_id)

    def start_heartbeat(self) -> None:
        def loop():
            while not self._stop.wait(HEARTBEAT_S):
                with self._lock:
                    ids = list(self.beating)
                for tid in ids:
                    with contextlib.suppress(Exception):
                        self.storage.record_heartbeat(tid)

        self._beat_thread = threading.Thread(target=loop, name="regbench-heartbeat", daemon=True)
        self._beat_thread.start()

    def stop_heartbeat(self) -> None:
        self._stop.set()

    # ---- finishing slots
    def finish(
        self,
        number: int,
        trial_id: int,
        status: str,
        value: float | None = None,
        values: list[float] | None = None,
        error: str | None = None,
    ) -> bool:
        """Tell the study how the slot ended; `interrupted` slots are enqueued again. False if the slot was
        no longer ours (another process found it stale and re-enqueued it)."""
        optuna = self.optuna
        TrialState = optuna.trial.TrialState
        with self._lock:
            self.beating.discard(trial_id)
        try:
            self.storage.set_trial_user_attr(trial_id, STATUS, status)
            if values is not None:
                self.storage.set_trial_user_attr(trial_id, VALUES, values)
            if error:
                self.storage.set_trial_user_attr(trial_id, ERROR, error[:500])
        except optuna.exceptions.UpdateFinishedTrialError:
            return False
        if status == "completed" and value is not None:
            state, told = TrialState.COMPLETE, value
        elif status == "pruned":
            state, told = TrialState.PRUNED, None
        else:
            state, told = TrialState.FAIL, None
        if self.sweep.file.method == "tpe":  # the sampler's after_trial sees it (constant liar)
            study = self.load()
            frozen = study.tell(number, told, state=state if told is None else None, skip_if_finished=True)
            if frozen.state != state:
                return False
        else:  # no sampler to tell: one update of the trial, whatever the study's size
            try:
                if not self.storage.set_trial_state_values(trial_id, state, None if told is None else [told]):
                    return False
            except optuna.exceptions.UpdateFinishedTrialError:
                return False
            frozen = self.storage.get_trial(trial_id)
        if status == "interrupted":
            requeue(self.load(), frozen)
        return True

    # ---- stale slots
    def reap(self) -> int:
        """Fail and re-enqueue running slots whose process is gone; returns how many were re-enqueued."""
        optuna = self.optuna
        TrialState = optuna.trial.TrialState
        study = self.load()
        before = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
        optuna.storages.fail_stale_trials(study)  # heartbeat: any host
        sid = self.storage.get_study_id_from_name(self.name)
        now = datetime.datetime.now()
        for ft in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            owner = ft.user_attrs.get(OWNER) or {}
            if owner.get("pid") == os.getpid() and owner.get("host") == HOST:
                continue
            if owner:
                dead = owner.get("host") == HOST and pid_alive(owner.get("pid")) is False
            else:  # taken, then its process died before it could sign it
                dead = ft.datetime_start is not None and (now - ft.datetime_start).total_seconds() > GRACE_S
            if not dead:
                continue
            tid = self.storage.get_trial_id_from_study_id_trial_number(sid, ft.number)
            try:
                self.storage.set_trial_user_attr(tid, STATUS, "interrupted")  # while it can still be changed
                if self.storage.set_trial_state_values(tid, state=TrialState.FAIL):
                    requeue(study, self.storage.get_trial(tid))
            except optuna.exceptions.UpdateFinishedTrialError:
                pass  # another process got there first (and re-enqueued it)
        return len(self.load().get_trials(deepcopy=False, states=(TrialState.WAITING,))) - before

    def retry_lost(self) -> int:
        """Re-enqueue slots that failed only because their worker process kept dying (`runner.WORKER_DIED`):
        a rerun gives them another chance, resumed from their checkpoints. Only a slot's latest trial counts,
        so each is enqueued once. Returns how many."""
        from ..runner import WORKER_DIED

        TrialState = self.optuna.trial.TrialState
        study = self.load()
        latest: dict[int, Any] = {}
        for ft in study.get_trials(deepcopy=False):
            if SLOT in ft.user_attrs:
                slot = int(ft.user_attrs[SLOT])
                if slot not in latest or ft.number > latest[slot].number:
                    latest[slot] = ft
        lost = [
            ft
            for ft in latest.values()
            if ft.state == TrialState.FAIL and str(ft.user_attrs.get(ERROR, "")).startswith(WORKER_DIED)
        ]
        for ft in lost:
            requeue(study, ft)
        return len(lost)

    def running_elsewhere(self) -> list[Any]:
        """Slots running in other processes (this process waits for them: one may need re-running)."""
        TrialState = self.optuna.trial.TrialState
        trials = self.load().get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        mine = {"host": HOST, "pid": os.getpid()}
        return [ft for ft in trials if ft.user_attrs.get(OWNER) != mine]

    def trials(self) -> list[Any]:
        return self.load().get_trials(deepcopy=False)


def requeue(study: optuna.Study, frozen: Any) -> None:
    """Enqueue a copy of a stopped slot: same slot number and parameters (also Optuna's stale callback)."""
    if SLOT not in frozen.user_attrs:
        return
    params = {**frozen.system_attrs.get("fixed_params", {}), **frozen.params}
    study.enqueue_trial(params, user_attrs={SLOT: frozen.user_attrs[SLOT], RETRY_OF: frozen.number})


def make_pruner(prune: PruneSpec | None):
    """Optuna's median pruner for the sweep's `prune` (a no-op pruner without one)."""
    optuna = import_optuna()
    if prune is None or prune.type == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=prune.startup_trials, n_warmup_steps=prune.warmup_epochs)


# ----------------------------------------------------------------------------------------------- pruning
_STUDIES: dict[tuple[str, str], Any] = {}


@dataclass
class Reporter:
    """A run's `on_epoch` callback (picklable, used in the worker process): report the epoch's validation
    value to the slot's trial (first seed only) and stop the run if the pruner says so."""

    url: str
    study_name: str
    trial_id: int
    prune: PruneSpec
    loss: bool  # report val_loss (the metric is a loss) instead of val_acc
    report: bool = True  # the first seed reports; every seed asks the pruner
    last_epoch: int | None = None  # never pruned there: the run is as good as finished

    def __call__(self, row: dict[str, Any]) -> None:

        value = first_head(row.get("val_loss" if self.loss else "val_acc"))
        if value is None:
            return
        optuna = import_optuna()
        storage = open_storage(self.url)
        key = (self.url, self.study_name)
        if key not in _STUDIES:
            _STUDIES[key] = optuna.load_study(
                study_name=self.study_name, storage=storage, pruner=make_pruner(self.prune)
            )
        study = _STUDIES[key]
        epoch = int(row["epoch"])
        try:
            if self.report:
                storage.set_trial_intermediate_value(self.trial_id, epoch, value)
            trial = storage.get_trial(self.trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            return
        if epoch != self.last_epoch and study.pruner.prune(study, trial):
            what = "val loss" if self.loss else "val acc"
            raise Pruned(f"after epoch {epoch}: {what} {value:.4g}, worse than the median of earlier trials there")
