"""The dispatcher: a run alone, side by side with others, an ensemble, or a seed group."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..config import PRINT_ONLY, Config
from ..core import console
from ..core.errors import ConfigError, DivergedError, RegbenchError, RunDirError, RunInterrupted
from ..core.resources import memory_bytes
from ..core.values import one_or_list
from ..nn.model import build_model
from ..rundir import CHECKPOINT, SUMMARY, Run, RunWriter, create_run_dir, load_checkpoint, load_run
from .fit import Fitted, OnEpoch, fit
from .infer import EVAL_BATCH, TrainedRun, load_trained, tested_probabilities
from .member import now_iso, status_of, versions
from .plan import Setup, chunks, prepare
from .resume_check import mark_failed

FINISHED = ("completed", "diverged", "pruned")  # a run directory in one of these is never trained again


def train(
    cfg: Config,
    out: str | Path = "runs",
    *,
    lang: str = "ko",
    quiet: bool = False,
    stack: int | None = None,
    report_test: bool = True,
    on_epoch: OnEpoch = None,
) -> TrainedRun:
    """Train the configured model, print the book's report, and write a run directory under `out`.

    Ensemble members train side by side unless `stack` is 1, at most `stack` at a time. Returns the finished
    run as read back from disk. Raises RegbenchError subclasses for bad input (before anything is written),
    DivergedError for a NaN/inf loss (the run is kept, status diverged), and lets KeyboardInterrupt through
    after marking the run interrupted. With `report_test=False` the run is tested and saved as always, but the
    printout stops after `train ended` (the book's `train()` alone; `regbench.book` prints the test report,
    samples and parameters on request).
    """
    setup = prepare(cfg)
    path = create_run_dir(out, cfg.name)
    with naming_interrupted(out, [path]), removed_if_empty([path]):  # a folder is a run (resumable) or gone
        RunWriter(path).write_config(cfg.to_dict())
        say = console.Printer(quiet)
        fit_all([cfg], [path], say, lang, setup=setup, stack=stack, report_test=report_test, callbacks=[on_epoch])
    return load_trained(path)


@contextlib.contextmanager
def naming_interrupted(out: str | Path, paths: list[Path] | None = None):
    """Turn Ctrl-C into RunInterrupted naming the run directories it stopped: `paths`, or the unfinished runs
    this process started directly under `out` (their folders are made when their turn comes)."""
    try:
        yield
    except RunInterrupted:
        raise
    except KeyboardInterrupt:
        if paths is None:
            paths = []
            with contextlib.suppress(OSError):
                for d in sorted(Path(out).iterdir()):
                    with contextlib.suppress(OSError, ValueError):
                        summary = json.loads((d / SUMMARY).read_text(encoding="utf-8"))
                        if summary.get("pid") == os.getpid() and summary.get("status") in ("interrupted", "running"):
                            paths.append(d)
        raise RunInterrupted(paths) from None


def train_ensemble(
    cfg: Config, setup: Setup, path: Path, say: console.Printer, lang: str, stack: int | None = None
) -> None:
    """`train.ensemble: N`: N members with seeds seed, seed+1, … (each a normal run directory under
    `members/`, trained side by side unless `stack` is 1), then the test accuracy of the averaged softmax
    of the first k members, k = 1…N. Resuming reuses finished members and continues unfinished ones."""

    n = cfg.train.ensemble
    writer = RunWriter(path)
    writer.write_config(cfg.to_dict())
    summary: dict[str, Any] = {"name": cfg.name, "status": "running", "seed": cfg.seed, "device": str(setup.device)}
    summary.update(host=socket.gethostname(), pid=os.getpid())
    summary.update(started_at=now_iso(), ensemble={"members": []}, versions=versions())
    writer.write_summary(summary, now=True)
    (path / "members").mkdir(exist_ok=True)
    t0 = time.perf_counter()
    cfgs = [
        dataclasses.replace(cfg, seed=cfg.seed + i, train=dataclasses.replace(cfg.train, ensemble=1)) for i in range(n)
    ]
    dirs = [path / "members" / f"m{i + 1}-seed{c.seed}" for i, c in enumerate(cfgs)]
    try:
        done = [i for i, d in enumerate(dirs) if (d / SUMMARY).is_file()]
        for member_dir in dirs:
            member_dir.mkdir(exist_ok=True)
        seeds = ", ".join(str(c.seed) for c in cfgs)
        say(f"Ensemble of {n} (seeds {seeds})" + (f", {len(done)} member(s) resumed or reused:" if done else ":"))
        fitted = fit_all(cfgs, dirs, say, lang, setup=setup, stack=stack, keep_going=True)
        for i, f in enumerate(fitted):
            if f.summary["status"] != "completed":
                why = f.summary.get("error", f.summary["status"])
                raise DivergedError(f"ensemble member {i + 1} (seed {cfgs[i].seed}): {why}")
        results = {i: (f.summary, f.test_probs) for i, f in enumerate(fitted)}
        members, probs = summary["ensemble"]["members"], []
        for i in range(n):
            done, member_probs = results[i]
            members.append({"seed": cfgs[i].seed, "test_acc": done["test_acc"], "path": f"members/{dirs[i].name}"})
            probs.append(member_probs)
        y = setup.splits["test"].y.cpu()
        cumulative, losses = [], []
        for k in range(1, n + 1):
            avg = [torch.stack([p[h] for p in probs[:k]]).mean(0) for h in range(len(setup.info.heads))]
            accs = [float((a.argmax(1) == y[:, h]).double().mean()) for h, a in enumerate(avg)]
            nll = sum(float(F.nll_loss(a.clamp_min(1e-12).log(), y[:, h])) for h, a in enumerate(avg))
            cumulative.append(one_or_list(accs))
            losses.append(nll)
            say(f"[Ens: {k}] test accuracy: {console.acc_text(accs)}")
        summary["ensemble"]["test_acc"] = cumulative
        summary.update(
            status="completed", test_acc=cumulative[-1], test_loss=losses[-1], train_s=time.perf_counter() - t0
        )
        write_mean_metrics(path, [path / m["path"] for m in members], writer)
    except BaseException as e:
        status, error = status_of(e)
        summary.update(status=status, **({"error": error} if error else {}))
        raise
    finally:
        summary["ended_at"] = now_iso()
        done_dirs = [d for d in dirs if (d / "summary.json").is_file()]
        summary["epochs_done"] = min((load_run(d).summary.get("epochs_done", 0) for d in done_dirs), default=0)
        writer.write_summary(summary, now=True)
        writer.write_log(say.lines)


def resume(path: str | Path, *, epochs: int | None = None, lang: str = "ko", quiet: bool = False) -> TrainedRun:
    """Continue an unfinished run (killed or interrupted) from its last checkpoint; a diverged run is refused.

    The run's own resolved config is used; the metrics, logs and random states continue as if the run
    had never stopped (on the CPU the final metrics are identical to an uninterrupted run's). With
    `epochs` (more than the run's), a run, completed or not, trains on to that many epochs, as if it had
    been started with them (config.yaml and the summary say so; the test report is made anew).
    """
    from ..resolve import load_config

    path = Path(path)
    if not (path / CHECKPOINT).is_file() and path.is_dir():
        return restart(path, lang, quiet)
    run = load_run(path, strict=False)  # its metrics are rebuilt from the checkpoint, not read from the file
    if run.status == "diverged":
        raise RunDirError(
            f"{path}: the run diverged; resuming would repeat the same steps and diverge again "
            "(train its config.yaml again with a lower optimizer.lr)"
        )
    try:
        cfg = load_config(run.config)
    except RegbenchError as e:  # a config.yaml edited into an invalid one
        mark_failed(path, f"{path / 'config.yaml'}: {e}")
        raise RunDirError(f"{path / 'config.yaml'}: {e}") from None
    lang = run.summary.get("lang", lang)
    if epochs is not None:
        cfg = extended(cfg, run, epochs)
    elif run.status == "completed":
        raise RunDirError(f"{path}: the run is already completed; nothing to resume (--epochs N trains it on)")
    setup = prepare(cfg, threads=run.summary.get("threads"))
    if epochs is not None:
        RunWriter(path).write_config(cfg.to_dict())
    with naming_interrupted(path.parent, [path]):
        fit_all([cfg], [path], console.Printer(quiet), lang, setup=setup, continuing=True)
    return load_trained(path)


def restart(path: Path, lang: str, quiet: bool) -> TrainedRun:
    """`resume` of a run directory with no checkpoint yet (killed or failed in its first epoch, or before it
    began): trained from the start in the same directory, from its config.yaml."""
    from ..resolve import load_config

    if not (path / "config.yaml").is_file():
        raise RunDirError(
            f"{path}: not a run directory (no config.yaml; a run stopped before it began?): nothing to resume"
        )
    prior = read_prior(path)
    if prior is not None and prior.status in FINISHED:
        raise RunDirError(f"{path}: the run is already {prior.status} and has no checkpoint.pt to continue from")
    try:
        cfg = load_config(path / "config.yaml")
    except RegbenchError as e:
        raise RunDirError(f"{path}: cannot restart it: {e}") from None
    setup = prepare(cfg)
    with naming_interrupted(path.parent, [path]):
        fit_all([cfg], [path], console.Printer(quiet), lang, setup=setup)
    return load_trained(path)


def extended(cfg: Config, run: Run, epochs: int) -> Config:
    """`cfg` with `epochs` epochs, if training the run on to them gives what a run started with them gives."""
    import dataclasses

    tc, where = cfg.train, f"{run.path}: cannot train on to {epochs} epochs"
    if tc.iterations is not None:
        raise RunDirError(f"{where}: its length is train.iterations ({tc.iterations}); train its config again")
    if epochs <= tc.epochs:
        done = run.summary.get("epochs_done", 0)
        finish = "" if done >= tc.epochs else f" ({done} done so far; --resume alone finishes them)"
        raise RunDirError(f"{where}: its config already has train.epochs {tc.epochs}{finish}; give more")
    if run.summary.get("stopped_early"):
        raise RunDirError(f"{where}: early stopping ended it at epoch {run.summary.get('epochs_done')}")
    if cfg.optimizer.schedule == "cosine":
        raise RunDirError(f"{where}: its cosine schedule spans the planned {tc.epochs} epochs")
    if tc.ensemble > 1:
        raise RunDirError(f"{where}: an ensemble's members cannot be extended; train its config again")
    if not (run.path / "checkpoint.pt").is_file():
        raise RunDirError(f"{where}: it has no checkpoint.pt to continue from")
    return dataclasses.replace(cfg, train=dataclasses.replace(tc, epochs=epochs))


def write_mean_metrics(path: Path, member_dirs: list[Path], writer: RunWriter) -> None:
    """The ensemble's metrics.jsonl: per epoch, the mean of the members' numeric single-head values."""
    runs = [load_run(d).metrics for d in member_dirs]
    for rows in zip(*runs, strict=False):  # members that stopped early have fewer epochs
        mean = {"epoch": rows[0]["epoch"]}
        for key, value in rows[0].items():
            if (
                key != "epoch"
                and isinstance(value, (int, float))
                and all(isinstance(r.get(key), (int, float)) for r in rows)
            ):
                mean[key] = sum(r[key] for r in rows) / len(rows)
        writer.add_metrics(mean)


MEMBER_VALUES = (
    "seed",
    "name",
    "optimizer.lr",
    "optimizer.weight_decay",
    "regularizer.l2_decay",
    "regularizer.l1_decay",
)


def stack_key(cfg: Config) -> str:
    """Configs with equal keys can train side by side: everything but the per-member values (and what is
    only printed) is equal."""
    doc = cfg.to_dict()
    for dotted in MEMBER_VALUES + PRINT_ONLY:
        *parents, leaf = dotted.split(".")
        node = doc
        for part in parents:
            node = node[part]
        node[leaf] = None
    doc["model"]["layers"] = [_neutral(e) for e in doc["model"]["layers"]]
    return repr(doc)


def _neutral(entry: Any) -> Any:
    """A layer entry with its per-member values (dropout keep_prob, noise std) blanked, blocks included."""
    if not isinstance(entry, list) or len(entry) < 2:
        return entry
    kind, params = entry[0], dict(entry[1])
    if kind == "dropout":
        params["keep_prob"] = None
    if kind == "noise":
        params["std"] = None
    for key in ("layers",):
        if key in params:
            params[key] = [_neutral(e) for e in params[key]]
    if "branches" in params:
        params["branches"] = [[_neutral(e) for e in b] for b in params["branches"]]
    return [kind, params]


def stack_groups(cfgs: Sequence[Config], stack: int | None, ids: Sequence[int] | None = None) -> list[list[int]]:
    """The runs that train together: `cfgs` (named by `ids`, default their positions) grouped by `stack_key`,
    in order of first appearance; every run alone with `stack=1` or an ensemble (it stacks its own members)."""
    ids = list(range(len(cfgs))) if ids is None else list(ids)
    groups: dict[str, list[int]] = {}
    for i, cfg in zip(ids, cfgs, strict=True):
        alone = stack == 1 or cfg.train.ensemble > 1
        groups.setdefault(f"alone:{i}" if alone else stack_key(cfg), []).append(i)
    return list(groups.values())


def can_stack(cfgs: list[Config]) -> bool:
    """True when the configs differ only in per-member values (and there are at least two)."""
    return len(cfgs) > 1 and len({stack_key(c) for c in cfgs}) == 1 and all(c.train.ensemble == 1 for c in cfgs)


def max_members(cfg: Config, setup: Setup, share: float = 0.25) -> int:
    """How many members fit in `share` of the machine's (or GPU's) memory: parameters with gradients and
    optimizer state, plus forward activations and their gradients for one batch."""
    net, rows = build_model_meta(cfg, setup)
    params = sum(r.weights + r.other for r in rows)
    acts = sum(math.prod(r.shape) for r in rows) * max(cfg.train.batch_size, EVAL_BATCH)
    per_member = 4 * (4 * params + 3 * acts)
    budget = memory_bytes(setup.device) * share
    return max(1, int(budget // max(per_member, 1)))


def build_model_meta(cfg: Config, setup: Setup):
    with torch.device("meta"):
        return build_model(cfg.model, setup.info.input_shape, setup.info.head_sizes)


def train_group(
    cfgs: list[Config],
    out: str | Path = "runs",
    *,
    lang: str = "ko",
    quiet: bool = False,
    stack: int | None = None,
    callbacks: list[OnEpoch] | None = None,
) -> list[TrainedRun]:
    """Train several runs, side by side where they can stack (up to `stack` members at a time, bounded by
    memory), one after another otherwise. Every run gets its own run directory; returns them in order.

    A diverged run is recorded (status diverged) and the others go on; DivergedError is raised at the end if
    any diverged, after all runs are written.
    """
    with naming_interrupted(out):
        say = console.Printer(quiet)
        fitted = fit_all(
            cfgs, [None] * len(cfgs), say, lang, out=out, stack=stack, keep_going=True, callbacks=callbacks
        )
    runs = [as_trained(f) for f in fitted]
    diverged = [r for r in runs if r.status == "diverged"]
    if len(runs) == 1 and diverged:
        raise DivergedError(str(diverged[0].summary.get("error", "diverged")))
    if diverged:
        raise DivergedError(
            f"{len(diverged)} of {len(runs)} runs diverged ({', '.join(r.path.name for r in diverged)}); "
            "the others completed"
        )
    return runs


def as_trained(f: Fitted) -> TrainedRun:
    """The run `f` trained, from what it wrote (no need to read its files back), or read back from disk."""
    if f.config is None or f.metrics is None:
        return load_trained(f.path)
    return TrainedRun(f.path, f.config, list(f.metrics), f.summary)


def fit_all(
    cfgs: list[Config],
    paths: list[Path | None],
    say: console.Printer,
    lang: str,
    *,
    setup: Setup | None = None,
    out: str | Path = "runs",
    stack: int | None = None,
    callbacks: list[OnEpoch] | None = None,
    keep_going: bool = False,
    announce: Callable[[int], None] | None = None,
    report_test: bool = True,
    continuing: bool = False,
) -> list[Fitted]:
    """THE dispatcher: bring every config's run directory to its end, deciding how each one is trained.

    - a path holding a finished run (completed, diverged, pruned) is read back: nothing is trained;
    - a path holding a checkpoint continues alone from it (`resume`);
    - an ensemble config (`train.ensemble > 1`) trains its members, which come back here;
    - fresh runs (path None: a new directory under `out`, made when its turn comes) are grouped by
      `stack_key` and trained side by side in chunks of at most `stack` (and of what fits in memory); a group
      of one, or `stack=1`, trains alone, each after `announce(i)` when given.
    `setup` (the data on the device) is shared when given, else prepared per group. `callbacks[i]` is run i's
    per-epoch callback. A run alone that diverges raises DivergedError unless `keep_going`, which records it and
    goes on (side by side, the others always go on). With `continuing` (`resume`), a finished run with a checkpoint
    trains on (a pruned run; a completed one given more epochs). Returns one Fitted per config, in order.
    """
    callbacks = callbacks or [None] * len(cfgs)
    fitted: dict[int, Fitted] = {}
    fresh: list[int] = []
    for i, (cfg, path) in enumerate(zip(cfgs, paths, strict=True)):
        prior = read_prior(path)
        if prior is not None and prior.status in FINISHED and not continuing:
            fitted[i] = Fitted(None, prior.summary, finished_probabilities(cfg, setup, prior), path)
        elif cfg.train.ensemble > 1:
            path = path or create_run_dir(out, cfg.name)
            if announce is not None:
                announce(i)
            train_ensemble(cfg, setup or prepare(cfg), path, console.Printer(say.quiet), lang, stack)
            fitted[i] = Fitted(None, load_run(path).summary, None, path)
        elif prior is not None and (path / CHECKPOINT).is_file():
            try:  # a checkpoint that cannot continue the run is one error line, and the run is marked failed
                ckpt = load_checkpoint(path)
                run_setup = setup or prepare(cfg, threads=prior.summary.get("threads"))
                if announce is not None:
                    announce(i)
                own = console.Printer(say.quiet)  # a run's log.txt holds its own report only
                fitted[i] = fit_alone(cfg, run_setup, path, own, lang, ckpt, callbacks[i], keep_going)
            except RegbenchError as e:
                mark_failed(path, str(e))
                raise
        else:
            fresh.append(i)
    for group in stack_groups([cfgs[i] for i in fresh], stack, fresh):
        group_setup = setup or prepare(cfgs[group[0]])
        size = min(stack or len(group), max_members(cfgs[group[0]], group_setup)) if len(group) > 1 else 1
        for part in chunks(group, size):
            part_paths = [paths[i] or create_run_dir(out, cfgs[i].name) for i in part]
            made = [p for i, p in zip(part, part_paths, strict=True) if paths[i] is None]
            for i, p in zip(part, part_paths, strict=True):  # at once: a killed run's folder can restart
                if paths[i] is None:
                    RunWriter(p).write_config(cfgs[i].to_dict())
            with removed_if_empty(made):
                if len(part) == 1:
                    i = part[0]
                    if announce is not None:
                        announce(i)
                    own = console.Printer(say.quiet)  # a run's log.txt holds its own report only
                    fitted[i] = fit_alone(
                        cfgs[i], group_setup, part_paths[0], own, lang, None, callbacks[i], keep_going, report_test
                    )
                    continue
                cbs = [callbacks[i] for i in part]
                results = fit([cfgs[i] for i in part], group_setup, part_paths, say, lang, callbacks=cbs)
                fitted.update(zip(part, results, strict=True))
    return [fitted[i] for i in range(len(cfgs))]


def fit_alone(
    cfg: Config,
    setup: Setup,
    path: Path,
    say: console.Printer,
    lang: str,
    ckpt: dict[str, Any] | None,
    callback: OnEpoch,
    keep_going: bool,
    report_test: bool = True,
) -> Fitted:
    """One run alone; with `keep_going`, a divergence is recorded in its run directory and not raised."""
    try:
        return fit([cfg], setup, [path], say, lang, ckpt=ckpt, callbacks=[callback], report_test=report_test)[0]
    except DivergedError:
        if not keep_going:
            raise
        return Fitted(None, load_run(path).summary, None, path)


@contextlib.contextmanager
def removed_if_empty(made: list[Path]) -> Iterator[None]:
    """Directories made for fresh runs are removed if the runs fail before their summary could be written
    (a full disk): a folder is either a run (resumable, from the start when it has no checkpoint) or gone.
    Ctrl-C keeps it: its config.yaml is written first, so `--resume` starts it afresh."""
    try:
        yield
    except Exception:
        for p in made:
            if not (p / SUMMARY).is_file() and not (p / CHECKPOINT).is_file():
                shutil.rmtree(p, ignore_errors=True)
        raise


def read_prior(path: Path | None) -> Run | None:
    """The run already in `path`, if any (a torn first write counts as none: it is trained from the start)."""
    if path is None or not (path / SUMMARY).is_file():
        return None
    try:
        return load_run(path, strict=False)
    except RegbenchError:
        return None


def finished_probabilities(cfg: Config, setup: Setup | None, run: Run) -> list[torch.Tensor] | None:
    """A finished run's test probabilities from its tested weights (an ensemble reuses a finished member)."""
    if setup is None or run.status != "completed":
        return None
    return tested_probabilities(cfg, setup, run.path, run.summary)


MAX_SEEDS = 1000  # a seed group larger than this is almost certainly a typo


def seed_list(base: int, seeds: int | Sequence[int]) -> list[int]:
    """`seeds=K` → the config's seed and the K−1 after it (base, base+1, …); a list → those seeds.

    Raises ConfigError (key `seeds`) for a count outside 1…1000, an empty list, repeats or bad values.
    """
    if isinstance(seeds, bool) or not isinstance(seeds, (int, Sequence)) or isinstance(seeds, str):
        raise ConfigError(f"expected a count or a list of seeds, got {seeds!r}", path="seeds")
    if isinstance(seeds, int):
        if not 1 <= seeds <= MAX_SEEDS:
            raise ConfigError(f"must be between 1 and {MAX_SEEDS}, got {seeds}", path="seeds")
        out = [base + i for i in range(seeds)]
    else:
        out = list(seeds)
        if not out or len(out) > MAX_SEEDS:
            raise ConfigError(f"expected 1 to {MAX_SEEDS} seeds, got {len(out)}", path="seeds")
        if any(isinstance(s, bool) or not isinstance(s, int) for s in out):
            raise ConfigError(f"expected integers, got {out}", path="seeds")
        if len(set(out)) != len(out):
            raise ConfigError(f"a seed is repeated in {out}", path="seeds")
    bad = [s for s in out if not 0 <= s < 2**63]
    if bad:
        raise ConfigError(f"must be between 0 and 2**63-1, got {bad[0]}", path="seeds")
    return out


def train_seeds(
    cfg: Config,
    seeds: int | Sequence[int],
    out: str | Path = "runs",
    *,
    lang: str = "ko",
    quiet: bool = False,
    stack: int | None = None,
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
) -> list[TrainedRun]:
    """Train `cfg` once per seed of `seed_list(cfg.seed, seeds)`; returns the runs in seed order.

    Each seed is an ordinary run directory under `out` (the config with only `seed` changed). The seeds
    train side by side in one stacked pass (at most `stack` at a time) unless `stack` is 1 or the config is
    an ensemble; then one after another, each printed after a `Seed i/K (seed s):` line. A diverging seed
    is recorded and the others go on (DivergedError at the end); one after another, a seed that fails
    stops the group, and the runs finished before it stay.
    """

    values = seed_list(cfg.seed, seeds)
    cfgs = [dataclasses.replace(cfg, seed=seed) for seed in values]
    # on_epoch(seed, row) for each seed's epochs
    cbs = [None if on_epoch is None else functools.partial(on_epoch, seed) for seed in values]
    if len(cfgs) > 1 and stack != 1 and cfg.train.ensemble == 1:
        return train_group(cfgs, out, lang=lang, quiet=quiet, stack=stack, callbacks=cbs)

    def announce(i: int) -> None:
        if not quiet and len(values) > 1:
            sys.stdout.write(f"Seed {i + 1}/{len(values)} (seed {cfgs[i].seed}):\n")
            sys.stdout.flush()

    one_by_one = stack if cfg.train.ensemble > 1 else 1  # an ensemble stacks its own members
    with naming_interrupted(out):
        say = console.Printer(quiet)
        fitted = fit_all(
            cfgs, [None] * len(cfgs), say, lang, out=out, stack=one_by_one, announce=announce, callbacks=cbs
        )
    return [load_trained(f.path) for f in fitted]
