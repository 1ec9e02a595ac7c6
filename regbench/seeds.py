"""Seed groups: one config trained once per seed, the runs that `compare` puts in one row (mean ± std).

`train_seeds` is the one place that decides how the seeds are trained. Today it runs them one after
another through the ordinary trainer, so every seed is an ordinary run directory; a stacked mode that
trains the seeds side by side in one pass can replace its body without changing its callers
(`regbench.train(..., seeds=K)` and `regbench train CONFIG --seeds K`).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from . import trainer
from .config import Config
from .errors import ConfigError
from .rundir import Run

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
    cfg: Config, seeds: int | Sequence[int], out: str | Path = "runs", *, lang: str = "ko", quiet: bool = False
) -> list[Run]:
    """Train `cfg` once per seed of `seed_list(cfg.seed, seeds)`; returns the runs in seed order.

    Each seed is an ordinary run directory under `out` (the config with only `seed` changed), printed as
    usual after a `Seed i/K (seed s):` line. A seed that fails or diverges stops the group with its error;
    the runs finished before it stay.
    """
    values = seed_list(cfg.seed, seeds)
    runs = []
    for i, seed in enumerate(values):
        if not quiet and len(values) > 1:
            sys.stdout.write(f"Seed {i + 1}/{len(values)} (seed {seed}):\n")
            sys.stdout.flush()
        runs.append(trainer.train(dataclasses.replace(cfg, seed=seed), out, lang=lang, quiet=quiet))
    return runs
