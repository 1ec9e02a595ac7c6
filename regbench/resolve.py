"""From a parsed config to one that is known to run: registry names, the model built on the meta device for
the data set's shape, and the memory it needs."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import torch

from . import optim
from .config import Config, apply_overrides, parse_override, with_defaults
from .core.errors import ConfigError, DataError
from .core.resources import check_fits
from .core.schema import describe, parse, read_yaml_file
from .data import DATASETS, DataInfo, check_data_keys, data_info
from .nn.layers import normalize_layers
from .nn.model import LayerRow, build_model


def check_config(cfg: Config) -> tuple[DataInfo, list[LayerRow]]:
    """Everything that can be checked before any work: the data set's shape and the model built on it."""
    info = data_info(cfg.data)
    with torch.device("meta"):
        _, rows = build_model(cfg.model, info.input_shape, info.head_sizes)
    check_model_memory(rows, cfg, None)
    return info, rows


def check_model_memory(rows: list[LayerRow], cfg: Config, device: torch.device | None) -> None:
    """Weights, gradients and two optimizer states in float32 must fit the machine (or the GPU)."""
    params = sum(r.weights + r.other for r in rows) * cfg.train.ensemble
    what = f"the model ({params:,} parameters with gradients and optimizer state)"
    check_fits(params * 4 * 4, what, "model.layers", device)


def load_config(
    source: str | Path | dict[str, Any],
    overrides: dict[str, Any] | list[str] | None = None,
) -> Config:
    """Load and validate a config from a YAML file or a dict, with `overrides` applied.

    `overrides` is a mapping of dotted keys to values, or a list of `KEY.PATH=VALUE` strings as `--set`
    takes them. Raises ConfigError (one line: file, key path, what is allowed) on any problem.
    """
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
        cfg = resolve_names(parse(Config, raw))
        check_shapes(cfg)
        if not isinstance(source, dict):  # provenance: the repository holding the file (not a config field)
            object.__setattr__(cfg, "source_file", str(Path(source).resolve()))
        return cfg
    except ConfigError as e:
        raise ConfigError(e.detail, source=label, path=e.path) from None


def resolve_names(cfg: Config) -> Config:
    """Check names against the registries and normalize the layer list; returns the resolved config."""

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
