"""The run directory, the contract between commands: config.yaml, metrics.jsonl, summary.json, model.pt, log.txt.

Every file is written whole to a temporary name in the same folder and renamed into place, so a reader
(or a crash) never sees half a file.
"""

from __future__ import annotations

import io
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from .errors import RunDirError

CONFIG, METRICS, SUMMARY, MODEL, LOG = "config.yaml", "metrics.jsonl", "summary.json", "model.pt", "log.txt"
STEPS, CHECKPOINT = "steps.jsonl", "checkpoint.pt"


class _Flow(list):
    """A list dumped in YAML flow style: layer entries read `[conv, {ksize: 3, chn: 6}]` as in the book."""


yaml.SafeDumper.add_representer(_Flow, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))


def config_yaml(config: dict[str, Any]) -> str:
    """The resolved config as YAML, each layer on one line in the book's notation."""
    model = dict(config.get("model", {}))
    if isinstance(model.get("layers"), list):
        model["layers"] = [_Flow(e) if isinstance(e, list) else e for e in model["layers"]]
    return yaml.safe_dump({**config, "model": model}, sort_keys=False, allow_unicode=True, width=120)


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temporary file and rename; `path` is either old or new, never partial.

    The temporary name holds the process id, so concurrent processes never share one (one process writes
    a given run directory); a plain open is 4× cheaper than mkstemp + chmod on every epoch.
    """
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise RunDirError(f"{path}: cannot write ({e.strerror or e})") from None
        raise


def append_lines(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append JSON lines in one write (readers skip a line that is not whole, as after a crash mid-write)."""
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write("".join(json.dumps(r) + "\n" for r in rows))
    except OSError as e:
        raise RunDirError(f"{path}: cannot write ({e.strerror or e})") from None


def create_run_dir(out: str | Path, name: str, stamp: float | None = None) -> Path:
    """Make `out/<name>-<YYYYmmdd-HHMMSS>` (a `-2`, `-3`… suffix if taken); mkdir is atomic, so concurrent
    runs never share a directory."""
    parent = Path(out)
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"{parent}: cannot create the runs directory ({e.strerror or e})") from None
    base = f"{name}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(stamp))}"
    for i in range(1, 10_000):
        path = parent / (base if i == 1 else f"{base}-{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
        except OSError as e:
            raise RunDirError(f"{path}: cannot create the run directory ({e.strerror or e})") from None
    raise RunDirError(f"{parent}: too many runs named {base}")


class RunWriter:
    """Writes one run directory; metrics rows are kept in memory and the file is rewritten whole each epoch."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: list[dict[str, Any]] = []

    def write_config(self, config: dict[str, Any]) -> None:
        atomic_write(self.path / CONFIG, config_yaml(config).encode())

    def add_metrics(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        append_lines(self.path / METRICS, [row])

    def add_steps(self, rows: list[dict[str, Any]]) -> None:
        """Append step-level rows to steps.jsonl in one write (readers skip a torn last line)."""
        if rows:
            append_lines(self.path / STEPS, rows)

    def restore(self, rows: list[dict[str, Any]], steps_done: int) -> None:
        """On resume: metrics and step rows as they were at the checkpoint (later ones are dropped)."""
        self.rows = list(rows)
        atomic_write(self.path / METRICS, "".join(json.dumps(r) + "\n" for r in self.rows).encode())
        if (self.path / STEPS).is_file():
            kept = [line for line in read_jsonl(self.path / STEPS) if line.get("step", steps_done) < steps_done]
            atomic_write(self.path / STEPS, "".join(json.dumps(r) + "\n" for r in kept).encode())

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Everything needed to continue after an epoch, written atomically."""
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write(self.path / CHECKPOINT, buf.getvalue())

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write(self.path / SUMMARY, (json.dumps(summary, indent=2, ensure_ascii=False) + "\n").encode())

    def save_model(self, state_dict: dict[str, torch.Tensor], name: str = MODEL) -> None:
        buf = io.BytesIO()
        torch.save({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, buf)
        atomic_write(self.path / name, buf.getvalue())

    def write_log(self, lines: list[str]) -> None:
        atomic_write(self.path / LOG, ("\n".join(lines) + "\n").encode())


@dataclass
class Run:
    """A run directory as read back: resolved config, per-epoch metrics and summary (all plain data)."""

    path: Path
    config: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def status(self) -> str:
        return str(self.summary.get("status", "unknown"))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The saved weights (loaded with weights_only=True: a run directory cannot run code)."""
        try:
            return torch.load(self.path / MODEL, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise RunDirError(f"{self.path}: no {MODEL} (status {self.status})") from None
        except Exception as e:  # a truncated or foreign file
            raise RunDirError(f"{self.path / MODEL}: cannot load ({e.__class__.__name__})") from None


def load_run(path: str | Path) -> Run:
    """Read a run directory; raises RunDirError if it is not one. A torn last metrics line is skipped."""
    p = Path(path)
    if not (p / SUMMARY).is_file() or not (p / CONFIG).is_file():
        raise RunDirError(f"{p}: not a run directory (needs {CONFIG} and {SUMMARY})")
    try:
        config = yaml.safe_load((p / CONFIG).read_text(encoding="utf-8")) or {}
        summary = json.loads((p / SUMMARY).read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise RunDirError(f"{p}: unreadable run files ({e.__class__.__name__}: {str(e).splitlines()[0]})") from None
    metrics = read_jsonl(p / METRICS) if (p / METRICS).is_file() else []
    if not isinstance(config, dict) or not isinstance(summary, dict):
        raise RunDirError(f"{p}: {CONFIG} and {SUMMARY} must hold mappings")
    return Run(p, config, metrics, summary)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a .jsonl file; a torn or foreign line (a crash mid-append) is skipped."""
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The run's last checkpoint (weights_only: a checkpoint cannot run code), or None if it has none."""
    file = Path(path) / CHECKPOINT
    if not file.is_file():
        return None
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:
        raise RunDirError(f"{file}: cannot load the checkpoint ({e.__class__.__name__})") from None
