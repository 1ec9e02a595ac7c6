"""From a parsed config to one that is known to run: registry names, the model built on the meta device for
the data set's shape, and the memory it needs."""

from __future__ import annotations

import torch

from .config import Config
from .core.resources import check_fits
from .data import DataInfo, data_info
from .nn.model import Row, build_model


def check_config(cfg: Config) -> tuple[DataInfo, list[Row]]:
    """Everything that can be checked before any work: the data set's shape and the model built on it."""
    info = data_info(cfg.data)
    with torch.device("meta"):
        _, rows = build_model(cfg.model, info.input_shape, info.head_sizes)
    check_model_memory(rows, cfg, None)
    return info, rows


def check_model_memory(rows: list[Row], cfg: Config, device: torch.device | None) -> None:
    """Weights, gradients and two optimizer states in float32 must fit the machine (or the GPU)."""
    params = sum(r.weights + r.other for r in rows) * cfg.train.ensemble
    what = f"the model ({params:,} parameters with gradients and optimizer state)"
    check_fits(params * 4 * 4, what, "model.layers", device)
