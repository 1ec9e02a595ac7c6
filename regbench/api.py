"""The Python API: what the `regbench` commands do, as typed functions (the CLI is a thin layer over them).

    import regbench
    run = regbench.train("configs/digits_cnn.yaml", overrides={"train.epochs": 2})
    runs = regbench.train("configs/digits_cnn_l1.yaml", seeds=3)        # a seed group: list of Run
    table = regbench.compare([run, *runs], baseline="digits_cnn")

Every error is a `RegbenchError` whose message is the one line the CLI prints after `error: `.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, overload

from .analysis.compare import Comparison
from .analysis.compare import compare as compare_runs
from .config import Config
from .core.errors import ConfigError, RegbenchError, with_source
from .resolve import load_config
from .rundir import Run, load_run
from .training import execute

ConfigLike = Config | str | Path | dict[str, Any]
LANGS = ("ko", "en")

__all__ = ["ConfigLike", "as_config", "compare", "load_config", "load_run", "resume", "train"]


def as_config(config: ConfigLike, overrides: dict[str, Any] | list[str] | None = None) -> Config:
    """A validated Config from a Config, a YAML file path or a dict, with `overrides` applied
    (`{"train.epochs": 2}` or `["train.epochs=2"]`). Raises ConfigError."""
    if isinstance(config, Config):
        return load_config(config.to_dict(), overrides) if overrides else config
    if isinstance(config, (str, Path, dict)):
        return load_config(config, overrides)
    raise ConfigError(f"expected a Config, a YAML file path or a dict, got {type(config).__name__}", source="config")


def check_lang(lang: str) -> str:
    if lang not in LANGS:
        raise ConfigError(f"expected ko or en, got {lang!r}", path="lang")
    return lang


@overload
def train(
    config: ConfigLike,
    out: str | Path = ...,
    seeds: None = ...,
    quiet: bool = ...,
    *,
    lang: str = ...,
    overrides: dict[str, Any] | list[str] | None = ...,
) -> Run: ...
@overload
def train(
    config: ConfigLike,
    out: str | Path = ...,
    seeds: int | Sequence[int] = ...,
    quiet: bool = ...,
    *,
    lang: str = ...,
    overrides: dict[str, Any] | list[str] | None = ...,
    stack: int | None = ...,
) -> list[Run]: ...
def train(
    config: ConfigLike,
    out: str | Path = "runs",
    seeds: int | Sequence[int] | None = None,
    quiet: bool = False,
    *,
    lang: str = "ko",
    overrides: dict[str, Any] | list[str] | None = None,
    stack: int | None = None,
) -> Run | list[Run]:
    """Train an experiment, print the book's report, and write its run directory under `out`.

    Args:
        config: a `Config` (from `load_config`), a YAML file path, or a dict in the YAML's structure.
        out: the parent folder of the run directories (`runs/<name>-<YYYYmmdd-HHMMSS>/`).
        seeds: None trains the config's own seed and returns one `Run`; `K` trains seeds seed, seed+1, …,
            seed+K−1 and a list trains those seeds, returning a list of `Run` (a seed group, which
            `compare` shows as one row with mean ± std).
        quiet: print nothing.
        lang: `ko` (the book's sample lines) or `en`.
        overrides: dotted keys applied on top of `config`, as `regbench train --set` does.
        stack: seed groups and ensemble members train side by side as one stacked model (regbench.training.execute),
            at most `stack` at a time (None: as many as fit in a quarter of memory); 1 trains them one
            after another.

    Raises RegbenchError subclasses (ConfigError, DataError, DivergedError, RunDirError), each with the
    one-line message the CLI prints; bad input is reported before any file is written.
    """
    cfg = as_config(config, overrides)
    check_lang(lang)
    try:
        if seeds is None:
            return execute.train(cfg, out, lang=lang, quiet=quiet, stack=stack)
        return execute.train_seeds(cfg, seeds, out, lang=lang, quiet=quiet, stack=stack)
    except RegbenchError as e:  # name the file in errors found while training (missing data files…)
        if isinstance(config, (str, Path)):
            raise with_source(e, config) from None
        raise


def resume(path: str | Path, *, epochs: int | None = None, lang: str = "ko", quiet: bool = False) -> Run:
    """Continue an unfinished run (killed or interrupted) from its last checkpoint; a diverged run is refused.
    With `epochs`, train a run (completed too) on to that many epochs."""
    return execute.resume(path, epochs=epochs, lang=check_lang(lang), quiet=quiet)


def compare(
    runs: Run | str | Path | Iterable[Run | str | Path],
    *,
    where: Sequence[str] | str = (),
    sort: str | None = None,
    desc: bool = False,
    columns: Sequence[str] | str | None = None,
    baseline: str | None = None,
    metric: str = "test_acc",
    group: bool = True,
    plot: str | Path | None = None,
) -> Comparison:
    """Compare runs side by side: `Run` objects, run directories, or folders searched for them.

    Returns a `Comparison`: `.rows` (a seed group is one row, mean ± std), `.to_pandas()` (needs pandas),
    `.to_csv()`, `.to_markdown()`, `.to_json()`. The options are `regbench compare`'s (see its --help);
    `where` takes one condition or a list.
    """
    items = [runs] if isinstance(runs, (Run, str, Path)) else list(runs)
    paths = [r.path if isinstance(r, Run) else r for r in items]
    return compare_runs(
        paths,
        where=[where] if isinstance(where, str) else list(where),
        sort=sort,
        desc=desc,
        columns=columns,
        baseline=baseline,
        metric=metric,
        group=group,
        plot=plot,
    )
