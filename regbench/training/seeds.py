"""Seed groups: one config trained once per seed, the runs that `compare` puts in one row (mean ± std).

`train_seeds` is the one place that decides how the seeds are trained: side by side as one stacked model
(regbench.training.group) unless `stack=1`, one after another otherwise; every seed is an ordinary run directory
(`regbench.train(..., seeds=K)` and `regbench train CONFIG --seeds K`).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from ..config import Config
from ..core.errors import ConfigError
from ..rundir import Run
from . import trainer

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
) -> list[Run]:
    """Train `cfg` once per seed of `seed_list(cfg.seed, seeds)`; returns the runs in seed order.

    Each seed is an ordinary run directory under `out` (the config with only `seed` changed). The seeds
    train side by side in one stacked pass (at most `stack` at a time) unless `stack` is 1 or the config is
    an ensemble; then one after another, each printed after a `Seed i/K (seed s):` line. A diverging seed
    is recorded and the others go on (DivergedError at the end); one after another, a seed that fails
    stops the group, and the runs finished before it stay.
    """
    from .group import train_group

    values = seed_list(cfg.seed, seeds)
    cfgs = [dataclasses.replace(cfg, seed=seed) for seed in values]
    if len(cfgs) > 1 and stack != 1 and cfg.train.ensemble == 1:
        return train_group(cfgs, out, lang=lang, quiet=quiet, stack=stack)
    runs = []
    for i, member in enumerate(cfgs):
        if not quiet and len(values) > 1:
            sys.stdout.write(f"Seed {i + 1}/{len(values)} (seed {member.seed}):\n")
            sys.stdout.flush()
        runs.append(trainer.train(member, out, lang=lang, quiet=quiet, stack=stack))
    return runs
