"""Running many configs: `run_trials` hands run tasks to worker processes and yields their results.

This is the one place where a sweep's runs are executed. A task is a full config plus the run directory
to write (or to continue, when it holds an unfinished run). Workers are long-lived `spawn` processes, each
training one run at a time with its share of the CPU threads; `workers=0` trains in the calling process
(no subprocess: handy under a debugger). Results come back as each run ends, whatever its status: a run
that diverges or fails is a result, never an exception, so the caller records it and goes on.

Stopping: the first Ctrl-C (or SIGTERM) asks every worker to stop; each marks its run `interrupted`
(the trainer keeps its checkpoint), the results already in flight are still yielded, then
KeyboardInterrupt is raised to the caller. A second Ctrl-C stops at once (workers are terminated; their
runs continue from the last epoch's checkpoint next time).

A worker that dies (kill -9, the OOM killer) is replaced, and the runs it was training are queued again,
each alone, continuing from their checkpoints: no run is lost or trained twice (`_Pool.requeue`).

Stacking: with `stack` > 1, up to that many waiting tasks are taken at once and those whose configs
can train side by side (regbench.training.execute: same architecture, data and schedule; different seed, lr,
weight decay, L2/L1, dropout keep_prob or noise std) go to one worker as a group, trained as one stacked
model; the rest run one by one. Each run still gets its own result and run directory.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .core.errors import RegbenchError

POLL_S = 0.5  # how often the parent looks for results, dead workers and new tasks
MAX_DEATHS = 3  # a run whose worker died this many times is failed (a rerun of the sweep tries it again)
WORKER_DIED = "the worker process died"  # starts the error of such a run (`study.retry_lost` looks for it)


@dataclass
class RunTask:
    """One run to execute.

    `config` is a complete config as plain data (it is validated again in the worker); `path` is the run
    directory: created if missing, continued from its checkpoint if it holds an unfinished run, and only
    read back if it holds a finished one. `on_epoch(row)` must be picklable; it may raise `Pruned`.
    """

    key: str
    config: dict[str, Any]
    path: str
    on_epoch: Callable[[dict[str, Any]], None] | None = None


@dataclass
class GroupTask:
    """Runs that train side by side in one worker (one stacked model)."""

    tasks: list[RunTask]

    @property
    def key(self) -> str:
        return "+".join(t.key for t in self.tasks)


Unit = RunTask | GroupTask


@dataclass
class RunResult:
    key: str
    path: str
    status: str  # completed | diverged | pruned | failed | interrupted
    error: str | None = None
    resumed: bool = False  # continued an unfinished run directory
    reused: bool = False  # the run directory was already finished: nothing was trained
    seconds: float = 0.0


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_per_worker(workers: int) -> int | None:
    """The CPU cores divided among the workers (None for in-process runs: leave torch's setting)."""
    return max(1, cpu_count() // workers) if workers > 0 else None


# ----------------------------------------------------------------------------------------------- one unit
def execute(unit: Unit) -> list[RunResult]:
    """Train (or continue, or just read back) the runs of a task or group in this process, through the one
    dispatcher (`training.execute.fit_all`: side by side where they stack); never raises for a bad run: a run
    that diverges, is pruned or fails is a result."""
    from .core import console
    from .resolve import load_config
    from .rundir import load_run
    from .training.execute import FINISHED, fit_all, read_prior
    from .training.member import status_of

    tasks = unit.tasks if isinstance(unit, GroupTask) else [unit]
    t0 = time.perf_counter()
    priors = {t.key: read_prior(Path(t.path)) for t in tasks}
    status, error = None, None
    try:
        cfgs = [load_config(t.config) for t in tasks]
        for t in tasks:
            Path(t.path).mkdir(parents=True, exist_ok=True)
        paths = [Path(t.path) for t in tasks]
        say = console.Printer(quiet=True)  # the report still goes to each run's log.txt
        fit_all(cfgs, paths, say, "ko", callbacks=[t.on_epoch for t in tasks], keep_going=True)
    except BaseException as e:  # a config, data or torch error for the whole unit, or Ctrl-C
        status, error = status_of(e)
    trained = [t for t in tasks if priors[t.key] is None or priors[t.key].status not in FINISHED]
    seconds = (time.perf_counter() - t0) / max(1, len(trained))
    results = []
    for t in tasks:
        prior = priors[t.key]
        if prior is not None and prior.status in FINISHED:
            results.append(RunResult(t.key, t.path, prior.status, prior.summary.get("error"), reused=True))
            continue
        run_status, run_error = status, error
        with contextlib.suppress(RegbenchError):
            run = load_run(t.path)
            if run.status != "running" or status is None:
                run_status, run_error = run.status, run.summary.get("error", run.summary.get("pruned"))
        result = RunResult(t.key, t.path, run_status or "failed", run_error, resumed=prior is not None)
        result.seconds = seconds
        results.append(result)
    return results


def stack_units(tasks: Iterator[RunTask | None], stack: int) -> Iterator[Unit | None]:
    """Take up to `stack` waiting tasks at a time and group those that can train side by side."""
    from .resolve import load_config
    from .training.execute import stack_key

    while True:
        batch: list[RunTask] = []
        ended = False
        while len(batch) < stack:
            task = next(tasks, _END)
            if task is _END:
                ended = True
                break
            if task is None:
                break
            batch.append(task)
        groups: dict[str, list[RunTask]] = {}
        for t in batch:
            try:
                key = stack_key(load_config(t.config))
            except RegbenchError:
                key = f"alone:{t.key}"  # the worker reports its config error
            groups.setdefault(key, []).append(t)
        for group in groups.values():
            yield GroupTask(group) if len(group) > 1 else group[0]
        if ended:
            return
        if not batch:
            yield None


# ----------------------------------------------------------------------------------------------- many runs
def run_trials(
    tasks: Iterable[RunTask | None], workers: int = 1, *, threads: int | None = None, stack: int = 1
) -> Iterator[RunResult]:
    """Execute `tasks` on `workers` processes (0: in this process) and yield each result as its run ends.

    `tasks` is consumed lazily, one task whenever a worker is free, so a caller can decide the next task
    from the results so far (a TPE sampler does). It may yield None for "nothing to run yet, ask again
    shortly" and ends when there is nothing left. `threads` is torch's CPU thread count in each worker
    (default: the cores divided among the workers; a config's own `train.threads` still wins).

    On Ctrl-C or SIGTERM the runs in flight are stopped (status `interrupted`), their results yielded, and
    KeyboardInterrupt is raised. With `stack` > 1, compatible tasks train side by side in groups of up to
    `stack` (see `stack_units`).
    """
    tasks = stack_units(iter(tasks), stack) if stack > 1 else iter(tasks)
    if workers <= 0:
        yield from _run_inline(tasks)
        return
    pool = _Pool(workers, threads if threads is not None else threads_per_worker(workers))
    with _StopSignals(pool.interrupt) as stop:
        try:
            exhausted = False
            while True:
                while not stop.requested and pool.retry and pool.idle:  # a dead worker's runs go first
                    pool.assign(pool.retry.pop(0))
                while not stop.requested and not exhausted and pool.idle:
                    task = next(tasks, _END)
                    if task is _END:
                        exhausted = True
                    elif task is None:
                        break
                    elif stop.requested:  # Ctrl-C while the task was being made: it never starts
                        yield from lost(task, "interrupted")
                    else:
                        pool.assign(task)
                if stop.requested and pool.retry:  # re-queued runs that will not start now: continued next time
                    retry, pool.retry = pool.retry, []
                    for unit in retry:
                        yield from lost(unit, "interrupted")
                if not pool.busy and not pool.retry and (exhausted or stop.requested):
                    break
                yield from pool.collect(POLL_S, stopping=stop.requested)
        finally:
            pool.shutdown(hard=stop.hard)
    if stop.requested:
        raise KeyboardInterrupt


_END = object()


def lost(unit: Unit, status: str, error: str | None = None) -> list[RunResult]:
    """Results for a task or group that never ran or whose worker died."""
    tasks = unit.tasks if isinstance(unit, GroupTask) else [unit]
    return [RunResult(t.key, t.path, status, error) for t in tasks]


def _run_inline(tasks: Iterator[Unit | None]) -> Iterator[RunResult]:
    state = {"running": False}

    def interrupt() -> None:
        if state["running"]:
            raise KeyboardInterrupt  # into the trainer: it marks the run interrupted and keeps the files

    with _StopSignals(interrupt) as stop:
        while not stop.requested:
            task = next(tasks, _END)
            if task is _END:
                break
            if task is None:
                time.sleep(POLL_S)
                continue
            state["running"] = True
            try:
                results = execute(task)
            finally:
                state["running"] = False
            yield from results
            if any(r.status == "interrupted" for r in results):  # Ctrl-C outside our handler (a test, ...)
                stop.requested = True
                break
    if stop.requested:
        raise KeyboardInterrupt


class _StopSignals:
    """SIGINT/SIGTERM while running: the first calls `on_first` and sets `requested`; a second raises
    KeyboardInterrupt at once (`hard`). Only in the main thread; elsewhere signals behave as usual."""

    def __init__(self, on_first: Callable[[], None]):
        self.on_first = on_first
        self.requested = self.hard = False
        self.saved: dict[int, Any] = {}

    def handler(self, signum, frame) -> None:
        if self.requested:
            self.hard = True
            raise KeyboardInterrupt
        self.requested = True
        self.on_first()

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.saved[sig] = signal.signal(sig, self.handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self.saved.items():
            signal.signal(sig, old)


# ----------------------------------------------------------------------------------------------- processes
class WorkerStartError(RegbenchError):
    """No worker process could be started (the system refused: too many processes, or no memory)."""

    exit_code = 1


START_RETRIES_S = (0.2, 0.5, 1.0, 2.0)  # waits between tries to start a worker the system refused


def _start_with_retries(w: _Worker) -> str | None:
    """Start the worker's process; None once it started, else the system's last refusal as text."""
    for wait in (*START_RETRIES_S, None):
        try:
            w.proc.start()
            return None
        except OSError as e:  # BlockingIOError (EAGAIN: no process slot free), ENOMEM
            if wait is None:
                return f"{e.__class__.__name__}: [Errno {e.errno}] {e.strerror or e}"
            time.sleep(wait)
    return None


class _Worker:
    def __init__(self, ctx, results, threads: int | None):
        self.tasks = ctx.Queue()
        self.task: Unit | None = None
        self.proc = ctx.Process(
            target=worker_main, args=(self.tasks, results, threads, os.getpid()), name="regbench-worker", daemon=True
        )


class _Pool:
    def __init__(self, workers: int, threads: int | None):
        import multiprocessing

        self.ctx = multiprocessing.get_context("spawn")
        self.results = self.ctx.Queue()
        self.threads = threads
        self.workers = [_Worker(self.ctx, self.results, threads) for _ in range(workers)]
        self.started = False
        self.retry: list[Unit] = []  # runs of a worker that died, each to continue alone on another worker
        self.deaths: dict[str, int] = {}  # run key → how many workers died while running it

    def start(self) -> None:
        """Start the workers not started yet. On a machine out of processes or memory (EAGAIN, ENOMEM) a start
        is retried for a few seconds; a worker that still cannot start is dropped while another runs, and
        with none running it is a WorkerStartError (one line, no traceback) rather than an OSError."""
        with _sigint_ignored(), _worker_env(self.threads):  # both inherited through exec
            for w in list(self.workers):
                if not w.proc.is_alive() and w.proc.exitcode is None:
                    error = _start_with_retries(w)
                    if error is None:
                        continue
                    self.workers.remove(w)
                    if not any(o.proc.is_alive() for o in self.workers):
                        raise WorkerStartError(
                            f"cannot start a worker process ({error}): the machine is out of processes or memory;"
                            " retry when it is less busy, or with fewer --workers (0 trains in this process)"
                        )

    @property
    def idle(self) -> bool:
        return any(w.task is None and (w.proc.is_alive() or not self.started) for w in self.workers)

    @property
    def busy(self) -> int:
        return sum(w.task is not None for w in self.workers)

    def assign(self, task: Unit) -> None:
        if not self.started:  # workers start with the first task: a finished sweep starts none
            self.started = True
            self.start()
        w = next(w for w in self.workers if w.task is None)  # one that died is noticed by collect()
        w.task = task
        w.tasks.put(task)

    def collect(self, timeout: float, stopping: bool) -> Iterator[RunResult]:
        """Results that arrived within `timeout`; a worker that died mid-run yields a failed (or, while
        stopping, interrupted) result and is replaced."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                pid, key, results = self.results.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            for w in self.workers:
                if w.proc.pid == pid and w.task is not None and w.task.key == key:
                    w.task = None
            yield from results
            if time.monotonic() >= deadline:
                break
        for i, w in enumerate(self.workers):
            if w.proc.is_alive() or w.proc.exitcode is None:
                continue
            if w.task is not None:
                task, w.task = w.task, None
                if stopping:
                    yield from lost(task, "interrupted")
                else:
                    yield from self.requeue(task, w.proc.exitcode)
            if not stopping:
                self.workers[i] = _Worker(self.ctx, self.results, self.threads)
                self.start()

    def requeue(self, unit: Unit, exitcode: int | None) -> Iterator[RunResult]:
        """A worker died (the OOM killer, a kill -9) while running `unit`: each of its runs goes back in the
        queue with its config, alone, and continues from its checkpoint (or starts afresh) on a replacement
        worker. A run whose worker died MAX_DEATHS times is failed instead (it is likely the cause)."""
        for task in unit.tasks if isinstance(unit, GroupTask) else [unit]:
            n = self.deaths[task.key] = self.deaths.get(task.key, 0) + 1
            if n < MAX_DEATHS:
                self.retry.append(task)
                continue
            why = f"{WORKER_DIED} (exit code {exitcode}; killed for memory?) {n} times while running it"
            yield from lost(task, "failed", why)

    def interrupt(self) -> None:
        """Ask every worker to stop its run (one SIGINT each; a worker ignores any further one)."""
        for w in self.workers:
            if w.proc.is_alive():
                with contextlib.suppress(OSError):
                    os.kill(w.proc.pid, signal.SIGINT)

    def shutdown(self, hard: bool = False) -> None:
        for w in self.workers:
            if w.proc.is_alive():
                with contextlib.suppress(Exception):
                    w.tasks.put(None)
        deadline = time.monotonic() + (0.0 if hard else 30.0)
        for w in self.workers:
            if w.proc.pid is None:
                continue
            w.proc.join(max(0.0, deadline - time.monotonic()))
            if w.proc.is_alive():
                w.proc.terminate()
                w.proc.join(5)
        for q in [self.results, *(w.tasks for w in self.workers)]:
            q.close()
            q.cancel_join_thread()


@contextlib.contextmanager
def _sigint_ignored():
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


@contextlib.contextmanager
def _worker_env(threads: int | None):
    """The workers' OpenMP settings (unless the user set them): `threads` each, and idle threads that sleep.

    OpenMP threads spin while they wait; with more threads than free cores (several sweeps on one machine,
    other jobs) a tiny model's step then takes ~10× longer. PASSIVE costs little when the cores are free.
    """
    wanted = {"OMP_WAIT_POLICY": "PASSIVE", **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    added = [k for k in wanted if k not in os.environ]
    os.environ.update({k: wanted[k] for k in added})
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def _one_shot_interrupt(signum, frame) -> None:
    """A worker's first SIGINT stops its run; later ones are ignored so that the run's files are written."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def _die_with_parent() -> None:
    """Linux: get SIGINT when the sweep process dies (even by SIGKILL), so an orphan stops its run cleanly."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGINT)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def worker_main(tasks, results, threads: int | None, parent: int) -> None:
    """A worker process: take a task, execute it, send the result; stop on None, Ctrl-C or a dead parent."""
    signal.signal(signal.SIGINT, _one_shot_interrupt)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent()
    try:
        if threads:
            import torch

            torch.set_num_threads(threads)
        while True:
            if os.getppid() != parent:
                return
            try:
                task = tasks.get(timeout=1.0)
            except queue.Empty:
                continue
            if task is None:
                return
            done = execute(task)
            results.put((os.getpid(), task.key, done))
            if any(r.status == "interrupted" for r in done):
                return
    except KeyboardInterrupt:
        return
