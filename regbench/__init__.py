"""regbench: run and compare regularization and training-technique experiments, in the course book's notation.

Python API (the CLI is a thin layer over it; README "Python API"):

    import regbench
    cfg = regbench.load_config("configs/digits_cnn.yaml", overrides={"train.epochs": 2})
    run = regbench.train(cfg)                # trains, prints the book's report, writes runs/<name>-<time>/
    run.summary["test_acc"], run.metrics[-1]["val_acc"], run.predict(images)
    group = regbench.train(cfg, seeds=3)     # three seeds: a list of Run
    regbench.compare([run, *group]).to_pandas()

The course book's own calls (`CnnRegModel(...).exec_all(...)`) are in `regbench.book`.

The names below load on first use (PEP 562), so `import regbench` (and the `regbench` command's --help)
import no torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .core.version import __version__

__all__ = [
    "Comparison",
    "Config",
    "ConfigError",
    "DataError",
    "DivergedError",
    "RegbenchError",
    "Run",
    "RunDirError",
    "__version__",
    "compare",
    "diff",
    "export_csv",
    "export_mlflow",
    "export_tensorboard",
    "load_config",
    "load_run",
    "resume",
    "train",
    "train_seeds",
]

if TYPE_CHECKING:
    from .api import (
        Comparison,
        Config,
        ConfigError,
        DataError,
        DivergedError,
        RegbenchError,
        Run,
        RunDirError,
        compare,
        diff,
        export_csv,
        export_mlflow,
        export_tensorboard,
        load_config,
        load_run,
        resume,
        train,
        train_seeds,
    )


def __getattr__(name: str) -> Any:
    """The public names load on first use, all from `regbench.api` (which imports the rest lazily too)."""
    if name not in __all__:
        raise AttributeError(f"module 'regbench' has no attribute {name!r}")
    value = getattr(importlib.import_module("regbench.api"), name)
    globals()[name] = value  # the next lookup is an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
