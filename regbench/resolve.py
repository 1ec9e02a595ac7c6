"""From a parsed config to one that is known to run: registry names, the model built on the meta device for
the data set's shape, and the memory it needs."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Config, apply_overrides, parse_override, with_defaults
from .core.errors import ConfigError, DataError
from .core.resources import check_fits
from .core.schema import describe, parse, read_yaml_file
from .data import DATASETS, DataInfo, check_data_keys, data_info

if TYPE_CHECKING:
    import torch

    from .nn.model import LayerRow

# the layer registry, the optimizers and the meta-device model import torch: they are imported by the functions
# that resolve and check a config, so `read_config` (suite --list, sweep --status) starts without torch


def check_config(cfg: Config) -> tuple[DataInfo, list[LayerRow]]:
    """Everything that can be checked before any work: the data set's shape and the model built on it."""
    import torch

    from .nn.model import build_model

    info = data_info(cfg.data)
    with torch.device("meta"):
        _, rows = build_model(cfg.model, info.input_shape, info.head_sizes)
    check_model_memory(rows, cfg, None)
    return info, rows


EVAL_BATCH = 512  # evaluation batch (training.infer evaluates in chunks of this many samples)


def check_model_memory(
    rows: list[LayerRow], cfg: Config, device: torch.device | None, data_bytes: int | None = None
) -> None:
    """What training and evaluation need at their peak must fit the memory available to this process (the
    GPU's free memory, or the machine's available memory within its cgroup limit; `core.resources`):

    - weights, gradients and two optimizer states in float32 (× ensemble members);
    - training activations at the batch size: every layer's output is kept for the backward pass, plus
      the gradient of the largest one and its input (`2 × Σ outputs + largest`);
    - evaluation activations at EVAL_BATCH (forward only: two consecutive outputs alive at once);
    - the data as loaded (synthetic: count × shape in float32; a file set is bounded by its files): with
      `data_bytes` (the loaded splits, checked again once read) that size instead.
    """
    params = sum(r.weights + r.other for r in rows) * cfg.train.ensemble
    per_sample = [math.prod(r.shape) for r in rows]
    total, largest = sum(per_sample, 0), max(per_sample, default=0)
    train_acts = cfg.train.batch_size * (2 * total + largest) * 4
    eval_acts = EVAL_BATCH * 2 * largest * 4
    data = synthetic_bytes(cfg) if data_bytes is None else data_bytes
    if device is not None and device.type == "cuda" and not cfg.train.resident:
        data = 0  # batches are copied to the GPU one at a time
    need = params * 4 * 4 + max(train_acts, eval_acts) + data
    what = (
        f"training ({params:,} parameters with gradients and optimizer state, activations for batches of "
        f"{cfg.train.batch_size} and evaluation batches of {EVAL_BATCH}" + (", the data as loaded)" if data else ")")
    )
    check_fits(need, what, "model.layers", device)


def synthetic_bytes(cfg: Config) -> int:
    """The synthetic set's samples in float32 (other sets' size is known only once their files are read)."""
    if cfg.data.name != "synthetic":
        return 0
    from .data.synthetic import DEFAULT_COUNT, DEFAULT_SHAPE

    count = DEFAULT_COUNT if cfg.data.count is None else cfg.data.count
    return count * math.prod(DEFAULT_SHAPE if cfg.data.shape is None else cfg.data.shape) * 4


def load_config(
    source: str | Path | dict[str, Any],
    overrides: dict[str, Any] | list[str] | None = None,
) -> Config:
    """Load and validate a config from a YAML file or a dict, with `overrides` applied.

    `overrides` is a mapping of dotted keys to values, or a list of `KEY.PATH=VALUE` strings as `--set`
    takes them. Raises ConfigError (one line: file, key path, what is allowed) on any problem.
    """
    cfg, label = _parse(source, overrides)
    try:
        cfg = resolve_names(cfg)
        check_shapes(cfg)
    except ConfigError as e:
        raise ConfigError(e.detail, source=label, path=e.path) from None
    if not isinstance(source, dict):  # provenance: the repository holding the file (not a config field)
        object.__setattr__(cfg, "source_file", str(Path(source).resolve()))
    return cfg


def read_config(
    source: str | Path | dict[str, Any],
    overrides: dict[str, Any] | list[str] | None = None,
) -> Config:
    """The config as `load_config` parses it (types, values, `--set`), without resolving registry names or
    building the model: for listing what a file holds (its data set, its name) without importing torch."""
    return _parse(source, overrides)[0]


def _parse(source: str | Path | dict[str, Any], overrides: dict[str, Any] | list[str] | None) -> tuple[Config, str]:
    if isinstance(source, dict):
        raw, label, default_name = source, "<config>", "run"
    else:
        path = Path(source)
        label = str(source)
        raw = read_yaml_file(path)
        if raw is None:
            raw = {}
        default_name = re.sub(r"[^A-Za-z0-9._-]", "_", path.stem) or "run"
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a mapping of config sections at the top level, got {describe(raw)}", source=label)
    if not isinstance(source, dict):
        not_a_config(raw, label)
    if isinstance(overrides, list):
        pairs = [parse_override(o) for o in overrides]
        overrides = dict(pairs)
    if overrides:
        with_set = f"{label} (with --set {', '.join(overrides)})"
        try:
            raw = apply_overrides(with_defaults(raw, overrides), overrides)
        except ConfigError as e:
            raise ConfigError(e.detail, source=with_set, path=e.path) from None
        label = with_set
    raw = dict(raw)
    raw.setdefault("name", default_name)
    try:
        return parse(Config, raw), label
    except ConfigError as e:
        raise ConfigError(e.detail, source=label, path=e.path) from None


def resolve_names(cfg: Config) -> Config:
    """Check names against the registries and normalize the layer list; returns the resolved config."""
    from . import optim
    from .nn.layers import normalize_layers

    if cfg.data.name not in DATASETS:
        raise ConfigError(DATASETS.unknown(cfg.data.name), path="data.name")
    check_data_keys(cfg.data)
    if cfg.optimizer.name not in optim.OPTIMIZERS:
        raise ConfigError(optim.OPTIMIZERS.unknown(cfg.optimizer.name), path="optimizer.name")
    layers = normalize_layers(cfg.model.layers, path="model.layers")
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, layers=layers))


def check_shapes(cfg: Config) -> None:
    """Build the model on the meta device for the data set's input shape, so a layer that does not fit
    (a pool stride that does not divide its input, a conv after a flat layer, an absurd width) is a
    config error before any work. Skipped when the data set's shape needs files that are not there."""

    try:
        check_config(cfg)
    except DataError:
        pass


CONFIG_KEYS = {f.name for f in dataclasses.fields(Config)}


def not_a_config(raw: dict[str, Any], label: str) -> None:
    """A ConfigError saying what the file is and which command takes it, for a sweep or suites file given
    where an experiment config belongs (`regbench validate sweep.yaml`); nothing for anything else."""
    if set(raw) <= CONFIG_KEYS:
        return
    if "params" in raw and "base" in raw:
        raise ConfigError(
            f"this is a sweep file (base: and params:), not an experiment config; run it with `regbench sweep"
            f" {label}` (--dry-run lists its trials without training)",
            source=label,
        )
    if "configs" in raw or "groups" in raw:
        raise ConfigError(
            f"this is a suite file (a group with configs:), not an experiment config; run it with `regbench suite"
            f" {label}` (--dry-run shows what it would train)",
            source=label,
        )
    groups = [k for k, v in raw.items() if isinstance(v, dict) and ("configs" in v or "groups" in v)]
    if groups and len(groups) == len(raw):
        shown = ", ".join(groups[:3]) + (", ..." if len(groups) > 3 else "")
        raise ConfigError(
            f"this is a suites file (groups {shown}), not an experiment config; run a group with `regbench suite"
            f" NAME --file {label}` (`regbench suite --list --file {label}` lists them)",
            source=label,
        )
