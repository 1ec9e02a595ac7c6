"""regbench: run and compare regularization and training-technique experiments, in the course book's notation.

Python API (the CLI is a thin layer over it):

    import regbench
    cfg = regbench.load_config("configs/digits_cnn.yaml", overrides={"train.epochs": 2})
    run = regbench.train(cfg)                # trains, prints the book's report, writes runs/<name>-<time>/
    run.summary["test_acc"], run.metrics[-1]["val_acc"]
"""

__version__ = "0.1.0"

from .config import Config, load_config  # noqa: E402
from .errors import ConfigError, DataError, DivergedError, RegbenchError, RunDirError  # noqa: E402
from .rundir import Run, load_run  # noqa: E402
from .trainer import train  # noqa: E402

__all__ = [
    "Config",
    "ConfigError",
    "DataError",
    "DivergedError",
    "RegbenchError",
    "Run",
    "RunDirError",
    "load_config",
    "load_run",
    "train",
]
