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

This module gathers the public names; the code is split by concern, each importing only those before it:
`sweep_text` (the book's notation) ← `sweep_spec` (the file) ← `study` (the Optuna study) ← `sweep_report`
(trial views, ranking, `sweep.json`, `sweep_status`, the dry-run plan) ← `sweep_loop` (`run_sweep`).
"""

from __future__ import annotations

from .study import default_storage
from .sweep_loop import DEFAULT_STACK, SweepInterrupted, run_sweep
from .sweep_report import (
    HEADER,
    SweepReport,
    TrialView,
    best_line,
    plan,
    ranked,
    read_index,
    sweep_status,
    trial_line,
    views_from_study,
)
from .sweep_spec import (
    INDEX,
    METRICS,
    SPEC,
    STUDY_DB,
    ParamSpec,
    PruneSpec,
    Sweep,
    SweepError,
    SweepFile,
    check_files,
    load_sweep,
)
from .sweep_text import labels, metric_text, params_text, value_text

__all__ = [
    "DEFAULT_STACK",
    "HEADER",
    "INDEX",
    "METRICS",
    "SPEC",
    "STUDY_DB",
    "ParamSpec",
    "PruneSpec",
    "Sweep",
    "SweepError",
    "SweepFile",
    "SweepInterrupted",
    "SweepReport",
    "TrialView",
    "best_line",
    "check_files",
    "default_storage",
    "labels",
    "load_sweep",
    "metric_text",
    "params_text",
    "plan",
    "ranked",
    "read_index",
    "run_sweep",
    "sweep_status",
    "trial_line",
    "value_text",
    "views_from_study",
]
