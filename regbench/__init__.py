"""regbench: run and compare regularization and training-technique experiments, in the course book's notation.

Python API (the CLI is a thin layer over it; README "Python API"):

    import regbench
    cfg = regbench.load_config("configs/digits_cnn.yaml", overrides={"train.epochs": 2})
    run = regbench.train(cfg)                # trains, prints the book's report, writes runs/<name>-<time>/
    run.summary["test_acc"], run.metrics[-1]["val_acc"], run.predict(images)
    group = regbench.train(cfg, seeds=3)     # three seeds: a list of Run
    regbench.compare([run, *group]).to_pandas()

The course book's own calls (`CnnRegModel(...).exec_all(...)`) are in `regbench.book`.
"""

__version__ = "0.1.0"

from .analysis.compare import Comparison  # noqa: E402
from .api import compare, resume, train  # noqa: E402
from .config import Config  # noqa: E402
from .core.errors import ConfigError, DataError, DivergedError, RegbenchError, RunDirError  # noqa: E402
from .resolve import load_config  # noqa: E402
from .rundir import Run  # noqa: E402
from .training.execute import train_seeds  # noqa: E402
from .training.infer import load_trained as load_run  # noqa: E402

__all__ = [
    "Comparison",
    "Config",
    "ConfigError",
    "DataError",
    "DivergedError",
    "RegbenchError",
    "Run",
    "RunDirError",
    "compare",
    "load_config",
    "load_run",
    "resume",
    "train",
    "train_seeds",
]
