"""Checks a checkpoint before a run continues from it, so a damaged or edited run is one error line, never a
silent partial result.

The checkpoint is the record of the epochs done: its `metrics` (every epoch's row so far) are what the
resumed run's metrics.jsonl is rebuilt from, not the file, which a crash or an edit may have damaged. Its
`config` (the resolved config it was trained with) is compared with the config the run continues with; a
changed key (a hand-edited config.yaml) is refused by name. Every field `fit` and `Member` read is checked for
type and consistency (`epoch` against the summary, the plan and the metrics rows).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..config import PRINT_ONLY, Config
from ..core.errors import RunDirError
from ..core.files import pid_alive
from ..core.safeload import short_repr
from ..rundir import CHECKPOINT, METRICS, SUMMARY, read_jsonl

NOT_COMPARED = ("train.epochs", *PRINT_ONLY)  # `resume --epochs` changes the length; printing changes nothing


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_checkpoint(ckpt: Any, cfg: Config, path: Path, epochs: int, steps_done: int | None) -> None:
    """Raise RunDirError (one line naming the file and the field) unless `ckpt` can continue `cfg` in `path`.

    `epochs` is the planned number of epochs, `steps_done` the steps the plan gives after the checkpoint's
    epoch (None: not checked). Fills `ckpt["metrics"]` from metrics.jsonl for a checkpoint written before
    checkpoints carried them, provided the file holds exactly the epochs done.
    """
    where = path / CHECKPOINT
    if not isinstance(ckpt, dict):
        raise RunDirError(f"{where}: not a regbench checkpoint (a {type(ckpt).__name__}, expected a mapping)")
    missing = [k for k in ("epoch", "model", "optimizer", "rng", "summary", "log") if k not in ckpt]
    if missing:
        raise RunDirError(f"{where}: not a regbench checkpoint (no {', '.join(missing)})")
    epoch, summary = ckpt["epoch"], ckpt["summary"]
    if not _int(epoch) or not 1 <= epoch <= epochs:
        raise RunDirError(f"{where}: epoch must be an integer from 1 to {epochs}, got {short_repr(epoch)}")
    if not isinstance(summary, dict) or summary.get("epochs_done") != epoch:
        done = summary.get("epochs_done") if isinstance(summary, dict) else None
        raise RunDirError(f"{where}: its summary says {short_repr(done)} epochs done, its epoch is {epoch}")
    if not _int(summary.get("steps_done")) or (steps_done is not None and summary["steps_done"] != steps_done):
        raise RunDirError(f"{where}: steps_done {short_repr(summary.get('steps_done'))} does not match epoch {epoch}")
    for key, kind in (("model", dict), ("optimizer", dict), ("rng", dict), ("log", list)):
        if not isinstance(ckpt[key], kind):
            raise RunDirError(f"{where}: {key} must be a {kind.__name__}, got {type(ckpt[key]).__name__}")
    if not all(isinstance(v, torch.Tensor) for v in ckpt["model"].values()):
        raise RunDirError(f"{where}: model must map parameter names to tensors")
    if not all(isinstance(line, str) for line in ckpt["log"]):
        raise RunDirError(f"{where}: log must be a list of lines")
    bad = ckpt.get("stopper_bad", 0)
    if not _int(bad) or bad < 0:
        raise RunDirError(f"{where}: stopper_bad must be a count, got {short_repr(bad)}")
    if "config" in ckpt:
        changed = first_change(ckpt["config"], cfg.to_dict())
        if changed is not None:
            key, old, new = changed
            raise RunDirError(
                f"{path}: {key} was changed since the checkpoint (from {short_repr(old, 30)} to {short_repr(new, 30)})"
                f"; a resumed run must continue its own config (train the edited config as a new run)"
            )
    rows = ckpt.get("metrics")
    source = where
    if rows is None:  # an older checkpoint: the file must hold exactly the epochs done
        source = path / METRICS
        try:
            rows = [r for r in read_jsonl(path / METRICS, strict=True) if _int(r.get("epoch")) and r["epoch"] <= epoch]
        except (OSError, ValueError, RunDirError) as e:
            raise RunDirError(f"{source}: cannot rebuild the metrics of epochs 1-{epoch} ({e})") from None
    if not isinstance(rows, list) or [r.get("epoch") if isinstance(r, dict) else None for r in rows] != list(
        range(1, epoch + 1)
    ):
        raise RunDirError(f"{source}: the metrics rows are not exactly epochs 1-{epoch}; the run cannot continue")
    ckpt["metrics"] = rows


def first_change(old: Any, new: Any, prefix: str = "") -> tuple[str, Any, Any] | None:
    """The first key path (dotted, NOT_COMPARED skipped) where two plain configs differ, with both values."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(dict.fromkeys([*old, *new])):
            dotted = f"{prefix}.{key}" if prefix else str(key)
            if dotted in NOT_COMPARED:
                continue
            found = first_change(old.get(key), new.get(key), dotted)
            if found is not None:
                return found
        return None
    if json.dumps(old, sort_keys=True, default=str) != json.dumps(new, sort_keys=True, default=str):
        return prefix or "config", old, new
    return None


def restore_checked(engine: Any, ckpt: dict[str, Any], path: Path) -> None:
    """`engine.restore(ckpt)`; weights or optimizer state that do not fit the model are one RunDirError."""
    try:
        engine.restore(ckpt)
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise RunDirError(
            f"{path / CHECKPOINT}: does not fit the run's model or optimizer ({short_repr(first, 120)})"
        ) from None


def mark_failed(path: Path, error: str) -> None:
    """A resume refused before training began: a summary still `running` (its process gone, or this one)
    records `failed` with the error, so no reader is left showing a run that is not running."""
    import os

    from ..core.files import atomic_write
    from ..core.safeload import load_json_bounded, read_limited

    try:
        summary = load_json_bounded(read_limited(path / SUMMARY), str(path / SUMMARY))
    except Exception:  # an unreadable summary: nothing to correct
        return
    if not isinstance(summary, dict) or summary.get("status") != "running":
        return
    if summary.get("pid") != os.getpid() and pid_alive(summary.get("pid")) is not False:
        return  # another live process owns it
    summary.update(status="failed", error=error)
    atomic_write(path / SUMMARY, (json.dumps(summary, indent=2, ensure_ascii=False) + "\n").encode())


def steps_after(plan: Any, epoch: Any) -> int | None:
    """The run's steps done after `epoch` by the plan (None for an epoch that is not a valid count)."""
    if not _int(epoch) or not 1 <= epoch <= plan.epochs:
        return None
    return plan.start(epoch) + plan.steps_in(epoch)
