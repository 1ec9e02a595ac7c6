"""The run directory, the contract between commands: config.yaml, metrics.jsonl, summary.json, model.pt, log.txt.

Every file is written whole to a temporary name in the same folder and renamed into place, so a reader
(or a crash) never sees half a file.
"""

from __future__ import annotations

import io
import json
import socket
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .core.errors import RegbenchError, RunDirError
from .core.files import append_lines, atomic_write, pid_alive
from .core.safeload import LimitError, load_json_bounded, load_yaml_bounded, read_limited

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions that save or load tensors: compare, report and sweep --status read
# thousands of run directories and never need it

CONFIG, METRICS, SUMMARY, MODEL, LOG = "config.yaml", "metrics.jsonl", "summary.json", "model.pt", "log.txt"
STEPS, CHECKPOINT = "steps.jsonl", "checkpoint.pt"
MAX_JSONL_BYTES = 256 * 1024 * 1024  # steps.jsonl of a long run with many sampled steps stays far below


class _Flow(list):
    """A list dumped in YAML flow style: layer entries read `[conv, {ksize: 3, chn: 6}]` as in the book."""


# libyaml's C emitter and parser when PyYAML has them: a sweep writes and compare reads hundreds of these
Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
Dumper.add_representer(_Flow, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))


def config_yaml(config: dict[str, Any]) -> str:
    """The resolved config as YAML, each layer on one line in the book's notation."""
    model = dict(config.get("model", {}))
    if isinstance(model.get("layers"), list):
        model["layers"] = [_Flow(e) if isinstance(e, list) else e for e in model["layers"]]
    return yaml.dump({**config, "model": model}, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=120)


def create_run_dir(out: str | Path, name: str, stamp: float | None = None) -> Path:
    """Make `out/<name>-<YYYYmmdd-HHMMSS>` (a `-2`, `-3`… suffix if taken); mkdir is atomic, so concurrent
    runs never share a directory."""
    if not str(out).strip():  # Path("") is the current directory: never write runs there by accident
        raise RunDirError('the output directory is empty (--out ""); give a folder, e.g. --out runs')
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


def snapshot(obj: Any) -> Any:
    """A copy that later in-place updates cannot reach: tensors cloned (on the CPU), dicts rebuilt, lists
    copied shallowly (the trainer appends to its lists but never changes an element), tuples kept."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: snapshot(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [snapshot(v) for v in obj] if obj and isinstance(obj[0], torch.Tensor) else list(obj)
    return obj


class Background:
    """One writer thread for the per-epoch checkpoint and summary: serializing and writing them overlaps
    the next epoch's training instead of adding to it. Jobs run in order; a job's error (a full disk) is
    raised in the training thread at the next submit or at `flush`."""

    _pool: ThreadPoolExecutor | None = None  # one thread for every run of the process, started on first use

    def __init__(self):
        self.pending: list[Future] = []

    def submit(self, fn, *args) -> None:
        self.check()
        if Background._pool is None:
            Background._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="regbench-writer")
        self.pending.append(Background._pool.submit(fn, *args))

    def check(self) -> None:
        done = [f for f in self.pending if f.done()]
        self.pending = [f for f in self.pending if not f.done()]
        for f in done:
            f.result()  # re-raises the job's error here

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        errors = []
        for f in pending:
            try:
                f.result()
            except BaseException as e:  # all jobs finish; the first error is raised
                errors.append(e)
        if errors:
            raise errors[0]


class RunWriter:
    """Writes one run directory. Metrics and step rows are appended line by line; the checkpoint and the
    per-epoch summary are written by a background thread (`flush` waits for them); everything else, and
    every write after `flush`, is immediate."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: list[dict[str, Any]] = []
        self.background = Background()

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
        """Everything needed to continue after an epoch: copied now, serialized and written atomically in
        the background (so it may land a moment after this returns; it is always whole)."""
        self.background.submit(self._write_torch, snapshot(state), self.path / CHECKPOINT)

    def write_summary(self, summary: dict[str, Any], now: bool = False) -> None:
        data = (json.dumps(summary, indent=2, ensure_ascii=False) + "\n").encode()
        if now:
            self.flush()
            atomic_write(self.path / SUMMARY, data)
        else:
            self.background.submit(atomic_write, self.path / SUMMARY, data)

    def save_model(self, state_dict: dict[str, torch.Tensor], name: str = MODEL) -> None:
        self._write_torch({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, self.path / name)

    def write_log(self, lines: list[str]) -> None:
        atomic_write(self.path / LOG, ("\n".join(lines) + "\n").encode())

    def flush(self) -> None:
        """Wait for the background writes; raises the first one's error."""
        self.background.flush()

    @staticmethod
    def _write_torch(obj: Any, file: Path) -> None:
        import torch

        buf = io.BytesIO()
        torch.save(obj, buf)
        atomic_write(file, buf.getvalue())


@dataclass(repr=False)
class Run:
    """A run directory as read back: resolved config, per-epoch metrics and summary (all plain data).

    Its files only; `regbench.train` and `regbench.load_run` return a `TrainedRun` (training.infer), which adds
    `model()` (the trained torch module) and `predict(x)` (class probabilities for new samples).
    """

    path: Path
    config: dict[str, Any] = field(default_factory=dict)  # the resolved config (config.yaml)
    metrics: list[dict[str, Any]] = field(default_factory=list)  # one dict per epoch (metrics.jsonl)
    summary: dict[str, Any] = field(default_factory=dict)  # status and results (summary.json)

    def __repr__(self) -> str:
        acc = self.summary.get("test_acc")
        return f"Run('{self.path}', status={self.status}" + (f", test_acc={acc!r})" if acc is not None else ")")

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def status(self) -> str:
        """The summary's status; a `running` run whose process on this machine is gone (killed, crashed)
        reads `stopped` — `regbench train --resume` continues it."""
        status = str(self.summary.get("status", "unknown"))
        if (
            status == "running"
            and self.summary.get("host") == socket.gethostname()
            and pid_alive(self.summary.get("pid")) is False
        ):
            return "stopped"
        return status

    @property
    def history(self) -> dict[str, list[Any]]:
        """The metrics by key, one value per epoch (Keras' `History.history`): `run.history["val_acc"]`."""
        keys = dict.fromkeys(k for row in self.metrics for k in row)
        return {k: [row.get(k) for row in self.metrics] for k in keys}

    def state_dict(self, weights: str = MODEL) -> dict[str, torch.Tensor]:
        """The saved weights (loaded with weights_only=True: a run directory cannot run code)."""
        import torch

        try:
            return torch.load(self.path / weights, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            hint = "; an ensemble keeps one per member under members/" if "ensemble" in self.summary else ""
            raise RunDirError(f"{self.path}: no {weights} (status {self.status}){hint}") from None
        except Exception as e:  # a truncated or foreign file
            raise RunDirError(f"{self.path / weights}: cannot load ({e.__class__.__name__})") from None


def load_run(path: str | Path, strict: bool = True) -> Run:
    """Read a run directory; raises RunDirError if it is not one or a file is damaged or over the parsing
    limits (size, depth, YAML aliases: `core.safeload`). A torn last metrics line is skipped; with
    `strict=False` (resume, which rebuilds the metrics from the checkpoint) any unreadable line is."""
    p = Path(path)
    if not (p / SUMMARY).is_file() or not (p / CONFIG).is_file():
        raise RunDirError(f"{p}: not a run directory (needs {CONFIG} and {SUMMARY})")
    name = CONFIG
    try:
        config = load_yaml_bounded(read_limited(p / CONFIG, "a run's config"), Loader, str(p / CONFIG)) or {}
        name = SUMMARY
        summary = load_json_bounded(read_limited(p / SUMMARY, "a run's summary"), str(p / SUMMARY))
        name = METRICS
        metrics = read_jsonl(p / METRICS, strict=strict) if (p / METRICS).is_file() else []
    except LimitError as e:
        raise RunDirError(f"{p / name}: unreadable ({e.detail})") from None
    except (OSError, ValueError, yaml.YAMLError, RegbenchError) as e:
        why = (
            str(e)
            if name == METRICS and isinstance(e, ValueError)
            else "not valid YAML"
            if isinstance(e, yaml.YAMLError)
            else "not valid JSON"
            if isinstance(e, ValueError)
            else getattr(e, "detail", None) or e
        )
        raise RunDirError(f"{p / name}: unreadable ({why})") from None
    if not isinstance(config, dict) or not isinstance(summary, dict):
        raise RunDirError(f"{p}: {CONFIG} and {SUMMARY} must hold mappings")
    return Run(p, config, metrics, summary)


def append_log(path: Path, lines: list[str]) -> None:
    """Add printed lines to a finished run's log.txt (the book's test/visualize calls after train)."""
    old = (path / LOG).read_text(encoding="utf-8") if (path / LOG).is_file() else ""
    atomic_write(path / LOG, (old + "".join(line + "\n" for line in lines)).encode())


def read_jsonl(path: Path, strict: bool = False) -> list[dict[str, Any]]:
    """The JSON objects of a .jsonl file; a torn last line (a crash mid-append) is skipped. Other unreadable
    or over-deep lines are skipped too, unless `strict`: then they are a ValueError (a damaged file). A file
    that is missing, not a regular file or over MAX_JSONL_BYTES is an OSError."""
    rows = []
    try:
        data = read_limited(path, "a JSON-lines file", MAX_JSONL_BYTES)
    except RegbenchError as e:  # missing, not a regular file, too large: an OSError, as a plain read's
        raise OSError(getattr(e, "detail", str(e))) from None
    lines = data.decode("utf-8", errors="replace").splitlines()
    for i, line in enumerate(lines):
        try:
            row = load_json_bounded(line, str(path))
        except (ValueError, RegbenchError):
            row = None
        if isinstance(row, dict):
            rows.append(row)
        elif strict and i < len(lines) - 1 and line.strip():
            raise ValueError(f"line {i + 1} is not a JSON object")
    return rows


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The run's last checkpoint (weights_only: a checkpoint cannot run code), or None if it has none."""
    import torch

    file = Path(path) / CHECKPOINT
    if not file.is_file():
        return None
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:
        raise RunDirError(f"{file}: cannot load the checkpoint ({e.__class__.__name__})") from None
