"""A sweep's values in the book's notation: short key names, values as Python prints them, the metric rounded.

Pure text helpers with no sweep state: the sweep file's messages and the report's lines both use them.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from typing import Any

LABELS = {"optimizer.lr": "lr", "regularizer.l2_decay": "weight decay", "optimizer.weight_decay": "weight decay"}


def labels(keys: Any) -> dict[str, str]:
    """Short names for dotted keys: `optimizer.lr` → lr, the L2 strengths → weight decay, else the last part
    (the full key where two would read alike)."""
    short = {k: LABELS.get(k, k.rsplit(".", 1)[-1]) for k in keys}
    counts = Counter(short.values())
    return {k: s if counts[s] == 1 else k for k, s in short.items()}


def value_text(v: Any) -> str:
    """Numbers as Python prints them (the homework's `str(lr)`), lists in the book's flow notation."""
    if isinstance(v, bool) or v is None:
        return json.dumps(v)
    if isinstance(v, (int, float, str)):
        return str(v)
    import yaml

    return yaml.safe_dump(v, default_flow_style=True, sort_keys=False, width=10_000).strip()


def params_text(params: dict[str, Any] | None, names: dict[str, str]) -> str:
    """`lr:0.1, weight decay:0.001` (a TPE trial not started yet has no params)."""
    if params is None:
        return "(proposed by TPE when it starts)"
    return ", ".join(f"{names.get(k, k)}:{value_text(v)}" for k, v in params.items())


def metric_text(value: float | None, std: float | None = None) -> str:
    """`0.73` as the homework prints a 100-sample accuracy (rounded to 4 decimals); `0.7333±0.0115` over seeds."""
    if value is None or not math.isfinite(value):
        return "-"
    text = str(round(value, 4))
    return f"{text}±{round(std, 4)}" if std is not None else text


def short_error(error: str) -> str:
    """An error on one line of at most 120 characters, without the run name the trainer puts first."""
    text = " ".join(str(error).split())
    text = re.sub(r"^[A-Za-z0-9._-]+-t\d+: ", "", text)  # the run name the trainer puts first
    text = text.split("; the run is marked diverged")[0]
    return text if len(text) <= 120 else text[:117] + "..."
