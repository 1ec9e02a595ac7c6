"""The Python API: what the `regbench` commands do, as typed functions (the CLI is a thin layer over them).

    import regbench
    run = regbench.train("configs/digits_cnn.yaml", overrides={"train.epochs": 2})
    runs = regbench.train("configs/digits_cnn_l1.yaml", seeds=3)        # a seed group: list of Run
    table = regbench.compare([run, *runs], baseline="digits_cnn")

One function per command: `train`, `resume`, `validate`, `show`, `compare`, `report`, `suite` (with
`suite_groups`, `suite_list`, `suite_plan`), `sweep` (with `load_sweep`, `sweep_plan`, `sweep_status`),
`datasets` and `fetch`; `regbench.book` uses the few helpers at the end.

Every error is a `RegbenchError` whose message is the one line the CLI prints after `error: `.

This module imports the rest of regbench inside its functions, so that importing it (and so `regbench`
and the `regbench` command's --help) loads no torch; `Run`, `Comparison` and `train_seeds` load on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from .config import Config
from .core.errors import ConfigError, DataError, DivergedError, RegbenchError, RunDirError, with_source
from .core.signals import exit_code as interrupt_exit_code  # noqa: F401 - for the CLI: 130 or 143
from .core.signals import ignore as ignore_signals  # noqa: F401 - for the CLI, as it exits
from .core.signals import install as install_signal_handlers  # noqa: F401 - for the CLI
from .core.signals import shielded  # noqa: F401 - for the CLI
from .core.version import __version__

if TYPE_CHECKING:
    import torch

    from .analysis.compare import Comparison
    from .analysis.diff import ConfigDiff
    from .analysis.export import ExportResult
    from .analysis.report import ReportResult
    from .data import DataInfo, Dataset
    from .experiments.suite import Plan, Suite, SuiteResult
    from .experiments.sweep import Sweep, SweepReport
    from .nn.model import LayerRow
    from .rundir import Run
    from .training.execute import train_seeds

ConfigLike = Config | str | Path | dict[str, Any]
Overrides = dict[str, Any] | list[str] | None
LANGS = ("ko", "en")

# `regbench compare --columns`' named columns and `regbench sweep --stack`'s default, here as plain values
# because the CLI's option help needs them without importing the analysis (test_api checks they agree)
COMPARE_COLUMNS = tuple(
    (
        "name n data model regularizer optimizer epochs test_acc best_val_acc best_epoch train_acc gap "
        "train_s_share engine near_zero_pct w_mean w_std status notes"
    ).split()
)
SWEEP_STACK = 32

# heavy names re-exported on first use (PEP 562): name → (module, attribute)
_LAZY = {
    "Comparison": ("regbench.analysis.compare", "Comparison"),
    "Run": ("regbench.rundir", "Run"),
    "train_seeds": ("regbench.training.execute", "train_seeds"),
}

__all__ = [
    "COMPARE_COLUMNS",
    "SWEEP_STACK",
    "Comparison",
    "Config",
    "ConfigError",
    "ConfigLike",
    "DataError",
    "DivergedError",
    "ModelCheck",
    "Overrides",
    "RegbenchError",
    "Run",
    "RunDirError",
    "__version__",
    "as_config",
    "check_lang",
    "compare",
    "csv_text",
    "datasets",
    "diff",
    "export_csv",
    "export_mlflow",
    "export_tensorboard",
    "fetch",
    "load_config",
    "load_run",
    "load_sweep",
    "report",
    "resume",
    "show",
    "suite",
    "suite_groups",
    "suite_list",
    "suite_plan",
    "suite_plan_lines",
    "sweep",
    "sweep_plan",
    "sweep_status",
    "train",
    "train_seeds",
    "validate",
    "with_source",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'regbench.api' has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


# ----------------------------------------------------------------------------------------------- configs
def load_config(source: str | Path | dict[str, Any], overrides: Overrides = None) -> Config:
    """Load and validate a config from a YAML file or a dict, with `overrides` applied.

    `overrides` is a mapping of dotted keys to values, or a list of `KEY.PATH=VALUE` strings as `--set`
    takes them. Raises ConfigError (one line: file, key path, what is allowed) on any problem.
    """
    from .resolve import load_config as load

    return load(source, overrides)


def as_config(config: ConfigLike, overrides: Overrides = None) -> Config:
    """A validated Config from a Config, a YAML file path or a dict, with `overrides` applied
    (`{"train.epochs": 2}` or `["train.epochs=2"]`). Raises ConfigError."""
    if isinstance(config, Config):
        return load_config(config.to_dict(), overrides) if overrides else config
    if isinstance(config, (str, Path, dict)):
        return load_config(config, overrides)
    raise ConfigError(f"expected a Config, a YAML file path or a dict, got {type(config).__name__}", source="config")


def check_lang(lang: str) -> str:
    """`lang` when it is one of LANGS (`ko`, the book's, or `en`); else a ConfigError."""
    if lang not in LANGS:
        raise ConfigError(f"expected ko or en, got {lang!r}", path="lang")
    return lang


@dataclass(frozen=True)
class ModelCheck:
    """A config known to run: the config, its data set's shape and heads, and the model's layer rows."""

    config: Config
    info: DataInfo
    rows: list[LayerRow]

    @property
    def weights(self) -> int:
        """Weights and kernels: the book's parameter count."""
        return sum(r.weights for r in self.rows)

    @property
    def params(self) -> int:
        """Every parameter (weights, biases and the rest)."""
        return sum(r.weights + r.other for r in self.rows)

    @property
    def classes(self) -> str:
        """Classes per head, as `10` or `31+3`."""
        return "+".join(str(len(h.classes)) for h in self.info.heads)


def validate(config: ConfigLike, overrides: Overrides = None) -> ModelCheck:
    """Check a config without training: keys, types, ranges, the layer list, and the model built on the
    meta device for its data set's shape (the data set's files must be there). Raises ConfigError or DataError."""
    from .resolve import check_config

    cfg = as_config(config, overrides)
    info, rows = check_config(cfg)
    return ModelCheck(cfg, info, rows)


def show(config: ConfigLike, overrides: Overrides = None) -> ModelCheck:
    """The model of a config, layer by layer (`.rows`: output shapes and parameter counts), as `regbench show`
    prints it; the same checks as `validate`."""
    return validate(config, overrides)


# ----------------------------------------------------------------------------------------------- training
def load_run(path: str | Path) -> Run:
    """A run directory read back: `.config`, `.metrics`, `.summary`, `.model()`, `.predict(x)` (a TrainedRun)."""
    from .training.infer import load_trained

    return load_trained(path)


@overload
def train(
    config: ConfigLike,
    out: str | Path = ...,
    seeds: None = ...,
    quiet: bool = ...,
    *,
    lang: str = ...,
    overrides: Overrides = ...,
    stack: int | None = ...,
    report_test: bool = ...,
    on_epoch: Callable[[dict[str, Any]], None] | None = ...,
    x: Any = ...,
    y: Any = ...,
    x_test: Any = ...,
    y_test: Any = ...,
    classes: Any = ...,
) -> Run: ...
@overload
def train(
    config: ConfigLike,
    out: str | Path = ...,
    seeds: int | Sequence[int] = ...,
    quiet: bool = ...,
    *,
    lang: str = ...,
    overrides: Overrides = ...,
    stack: int | None = ...,
    report_test: bool = ...,
    on_epoch: Callable[[dict[str, Any]], None] | None = ...,
    x: Any = ...,
    y: Any = ...,
    x_test: Any = ...,
    y_test: Any = ...,
    classes: Any = ...,
) -> list[Run]: ...
def train(
    config: ConfigLike,
    out: str | Path = "runs",
    seeds: int | Sequence[int] | None = None,
    quiet: bool = False,
    *,
    lang: str = "ko",
    overrides: Overrides = None,
    stack: int | None = None,
    report_test: bool = True,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    x: Any = None,
    y: Any = None,
    x_test: Any = None,
    y_test: Any = None,
    classes: Any = None,
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
        report_test: False trains and tests as always but prints only up to `train ended` (the book's
            `train()` alone; `regbench.book` prints the rest on request). One run only.
        on_epoch: called after every epoch with that epoch's metrics row (as metrics.jsonl writes it, plus
            `seed`), e.g. to draw live curves in Jupyter; an exception in it is a warning, not a failed run.
        x, y: train on these arrays (numpy or torch; images N×H×W[×C] or N×C×H×W, or features N×F; integer
            labels N) instead of the config's data set, without writing a file; the config's split ratios,
            limit, normalization and augmentation apply. With `x_test`, `y_test` they are the test split
            (`data.split: official`); `classes` names the labels. Data set `arrays` in config.yaml.

    Raises RegbenchError subclasses (ConfigError, DataError, DivergedError, RunDirError), each with the
    one-line message the CLI prints; bad input is reported before any file is written.
    """
    from .core.provenance import config_source
    from .training import execute
    from .training.inmemory import safe_callback, with_arrays

    cfg = as_config(config, overrides)
    check_lang(lang)
    if x is not None or y is not None:
        cfg = with_arrays(cfg, x, y, x_test, y_test, classes)
    try:
        with config_source(config if isinstance(config, (str, Path)) else getattr(cfg, "source_file", None)):
            if seeds is None:
                cb = None if on_epoch is None else safe_callback(lambda row: on_epoch({"seed": cfg.seed, **row}))
                kw = {"stack": stack, "report_test": report_test, "on_epoch": cb}
                return execute.train(cfg, out, lang=lang, quiet=quiet, **kw)
            each = {} if on_epoch is None else {"on_epoch": safe_callback(lambda s, row: on_epoch({"seed": s, **row}))}
            return execute.train_seeds(cfg, seeds, out, lang=lang, quiet=quiet, stack=stack, **each)
    except RegbenchError as e:  # name the file in errors found while training (missing data files…)
        if isinstance(config, (str, Path)):
            raise with_source(e, config) from None
        raise


def resume(path: str | Path, *, epochs: int | None = None, lang: str = "ko", quiet: bool = False) -> Run:
    """Continue an unfinished run (killed or interrupted) from its last checkpoint; a diverged run is refused.
    With `epochs`, train a run (completed too) on to that many epochs."""
    from .training import execute

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
    smoke: bool = False,
) -> Comparison:
    """Compare runs side by side: `Run` objects, run directories, or folders searched for them.

    Returns a `Comparison`: `.rows` (a seed group is one row, mean ± std), `.to_pandas()` (needs pandas),
    `.to_csv()`, `.to_markdown()`, `.to_json()`, `.to_latex()`. The options are `regbench compare`'s (see its
    --help); `where` takes one condition or a list; `smoke` also shows `suite --smoke` rehearsal runs.
    """
    from .analysis.compare import compare as compare_runs
    from .rundir import Run

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
        smoke=smoke,
    )


def diff(a: str | Path, b: str | Path, paths: Iterable[str | Path] = (), *, smoke: bool = False) -> ConfigDiff:
    """The resolved-config keys (layer parameters too) that differ between `a` and `b`: run directories, or
    row labels / run names / config names under `paths`; `.keys`: (key, a's value, b's value)."""
    from .analysis.diff import config_diff

    return config_diff(paths, str(a), str(b), smoke=smoke)


def export_csv(paths: Sequence[str | Path], out: str | Path, *, where: Sequence[str] = (), smoke: bool = False):
    """A long CSV at `out`: a row per run and epoch, the config keys that differ as columns (runs as compare picks)."""
    from .analysis.export import export_csv as write

    return write(paths, out, where=where, smoke=smoke)


def export_tensorboard(paths: Sequence[str | Path], out: str | Path, *, where: Sequence[str] = (), smoke: bool = False):
    """TensorBoard event files under `out/<group>/<run>/` (scalars, step losses, HParams); needs regbench[tensorboard]."""
    from .analysis.export import export_tensorboard as write

    return write(paths, out, where=where, smoke=smoke)


def export_mlflow(paths: Sequence[str | Path], tracking_uri: str, **options: Any) -> ExportResult:
    """Each run as an MLflow run at `tracking_uri` (params, metrics with step=epoch, tags, files); options
    `experiment`, `where`, `smoke`, `artifacts` as in analysis.export. Needs regbench[mlflow]."""
    from .analysis.export import export_mlflow as write

    return write(paths, tracking_uri, **options)


def csv_text(records: list[dict[str, Any]], fields: list[str] | None = None) -> str:
    """Records as CSV, as `Comparison.to_csv` writes them: the union of their keys as the header."""
    from .analysis.compare import csv_text as write

    return write(records, fields)


def report(
    paths: Sequence[str | Path],
    out: str | Path = "report",
    *,
    where: Sequence[str] = (),
    baseline: str | None = None,
    metric: str = "test_acc",
    sort: str | None = None,
    desc: bool = False,
    columns: Sequence[str] | str | None = None,
    samples: int = 8,
    lang: str | None = None,
    figures: str = "png",
    smoke: bool = False,
) -> ReportResult:
    """Write `out/report.md` and a self-contained `out/report.html` (table, learning curves, histograms,
    `samples` test images per row, confusion matrix) for the runs in or under `paths`; the table options
    are `compare`'s. `lang` (ko/en; None: the runs' own) sets its words, `figures` is png or svg. Returns
    where the files went, with the notes and warnings to print."""
    from .analysis.report import write_report

    return write_report(
        paths,
        out,
        where=where,
        baseline=baseline,
        metric=metric,
        sort=sort,
        desc=desc,
        columns=columns,
        samples=samples,
        lang=lang,
        figures=figures,
        smoke=smoke,
    )


# ----------------------------------------------------------------------------------------------- suites
def suite_list(file: str | Path | None = None) -> list[dict[str, Any]]:
    """One row per group of the suites file (default configs/suites.yaml): name, doc, config count or the
    groups it runs, and its data sets with whether their files are here."""
    from .experiments import suite as lib

    return lib.list_groups(file)


def suite_groups(target: str | Path, file: str | Path | None = None) -> list[Suite]:
    """The groups `regbench suite TARGET` runs: a group name of the suites file `file`, a group file of its
    own (a YAML with `configs:`), or a suites file (all its groups), expanded to groups with configs."""
    from .experiments import suite as lib

    return lib.find_suites(target, file)


def suite_plan(
    group: Suite,
    *,
    seeds: int | Sequence[int] | None = None,
    overrides: Overrides = None,
    smoke: bool = False,
    check_data: bool = True,
    vary_split: bool = False,
) -> Plan:
    """Load and check every config of `group` and plan its passes (what `suite` trains, and `--dry-run`
    shows); raises ConfigError or DataError before anything is written. `vary_split`: each seed draws its
    own split too (data.seed = seed)."""
    from .experiments import suite as lib

    kw = {"smoke": smoke, "check_data": check_data, "vary_split": vary_split}
    return lib.plan_suite(group, seeds=seeds, overrides=overrides, **kw)


def suite_plan_lines(plan: Plan, out: str | Path) -> list[str]:
    """The dry run's lines for a plan: the group, its runs and folder, and each pass."""
    from .experiments import suite as lib

    lines = [f"Suite {plan.suite.name}: {plan.runs} runs into {lib.folder_of(plan.suite, out, plan.smoke)}"]
    for i, cfgs in enumerate(plan.passes, 1):
        lines.append("  " + lib.pass_line(plan.suite, i, len(plan.passes), cfgs, len(cfgs) > 1).split(": ", 1)[1])
    return lines


def suite(
    plan: Plan,
    out: str | Path = "runs/suites",
    *,
    lang: str = "ko",
    quiet: bool = False,
    stack: int | None = None,
    say: Callable[[str], None] | None = None,
    progress: Callable[[int, int, int], None] | None = None,
) -> SuiteResult:
    """Train a planned group into `out/<name>/` pass by pass (side by side where the runs stack, unless
    `stack` is 1); a run that diverges or fails is recorded and the others go on. The result holds the
    run directories, the group's compare table and the problems; `say` gets the progress lines and
    `progress(done, total, failed)` the counts of runs."""
    from .experiments import suite as lib

    return lib.run_suite(plan, out, lang=check_lang(lang), quiet=quiet, stack=stack, say=say, progress=progress)


# ----------------------------------------------------------------------------------------------- sweeps
def load_sweep(source: str | Path | dict[str, Any]) -> Sweep:
    """Read and check a sweep file (base:, params:, method:, trials:, ...); raises ConfigError."""
    from .experiments import sweep as lib

    return lib.load_sweep(source)


def sweep_plan(spec: Sweep, out: str | Path = "sweeps") -> list[str]:
    """The trials a sweep would run, one line each (`regbench sweep --dry-run`)."""
    from .experiments import sweep as lib

    return lib.plan(spec, out)


def sweep(
    spec: Sweep,
    out: str | Path = "sweeps",
    *,
    workers: int = 1,
    storage: str | None = None,
    say: Callable[[str], None] | None = print,
    stack: int = SWEEP_STACK,
    progress: Callable[[int, int, int], None] | None = None,
) -> SweepReport:
    """Run (or continue) a sweep into `out/<name>/` on `workers` processes (0: in this one), trials that
    share an architecture side by side up to `stack` runs; `say` gets a line per finished trial and
    `progress(done, total, failed)` the counts of trials. Returns the report (ranking, counts, the best
    trials' compare table)."""
    from .experiments import sweep as lib

    quiet = say or (lambda _line: None)
    return lib.run_sweep(spec, out, workers=workers, storage=storage, say=quiet, stack=stack, progress=progress)


def sweep_status(path: str | Path, storage: str | None = None) -> SweepReport:
    """The ranking and state of a sweep folder, training nothing (`regbench sweep --status`)."""
    from .experiments import sweep as lib

    return lib.sweep_status(path, storage)


# ----------------------------------------------------------------------------------------------- data sets
def datasets(root: str | Path = "data") -> list[dict[str, Any]]:
    """One row per data set: name, input `shape` (C, H, W) or None when it comes from the files, `classes`
    per head, where its `files` go under `root`, whether they are `present`, and a `doc` line."""
    from .data.catalog import catalog

    return catalog(str(root))


def fetch(name: str, root: str | Path = "data", *, starting: Callable[[], None] | None = None) -> str:
    """Download data set `name` into `root` (its own URLs and SHA-256 checksums, extracted safely, nothing
    half-written on failure); returns where its files are. `starting` is called once the name is known to be
    fetchable, before the download. Raises ConfigError (unknown name) or DataError."""
    from .data.catalog import fetcher

    download = fetcher(name, str(root))
    if starting is not None:
        starting()
    return download()


# ----------------------------------------------------------------------------------------------- regbench.book
def load_dataset(config: Config) -> Dataset:
    """The data set of a config, loaded, split, capped and normalized as training sees it."""
    from .data import load_data

    return load_data(config.data)


def check_input(config: Config, input_shape: tuple[int, ...], head_sizes: list[int]) -> None:
    """Build the config's model on the meta device for `input_shape` (e.g. the book's flat input): a layer
    that cannot take it is a ConfigError at model.layers[i]."""
    import torch

    from .nn.model import build_model

    with torch.device("meta"):
        build_model(config.model, input_shape, head_sizes)


def pick_samples(n: int, seed: int, count: int) -> torch.Tensor:
    """Indices of the `count` test samples shown for a run with `seed` (the ones the trainer shows)."""
    from .training.infer import pick_samples as pick

    return pick(n, seed, count)


def sample_lines(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, info: DataInfo, lang: str) -> list[str]:
    """The book's show_select_results lines for samples `x` with answers `y`, predicted by `net`."""
    from .training.infer import sample_lines as lines

    return lines(net, x, y, info, check_lang(lang))


def param_hist(net: torch.nn.Module, file: str | Path) -> dict[str, float | int]:
    """Save the book's histogram of a model's weights and kernels to `file` (PNG); returns the weights'
    statistics (`weights`, `near_zero`, ...) that its `Near 0 parameters` line reports."""
    from .nn.model import param_stats
    from .training.member import save_param_hist

    save_param_hist(net, Path(file))
    return param_stats(net)


def add_log_lines(run: Run, lines: list[str]) -> None:
    """Append printed lines to a finished run's log.txt (the book's test/visualize after train)."""
    from .rundir import append_log

    append_log(run.path, lines)
