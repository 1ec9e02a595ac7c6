"""Reading result values as stored: an accuracy is a number for one head and a list for several."""

from __future__ import annotations

import math
from typing import Any


def number(v: Any) -> float | None:
    """A finite int/float as float, else None (bools, strings and NaN from a hand-edited file are not numbers)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def per_head(v: Any) -> float | list[float] | None:
    """An accuracy as stored: a number for one head, a list for several; anything else is None."""
    if isinstance(v, list):
        vals = [number(x) for x in v]
        return None if not vals or any(x is None for x in vals) else vals  # type: ignore[return-value]
    return number(v)


def first_head(v: Any) -> float | None:
    """The first head's value of an accuracy (a number, or a list with one per head) as a float, else None."""
    if isinstance(v, list):
        v = v[0] if v else None
    return number(v)


def one_or_list(accs: list[float] | None) -> float | list[float] | None:
    """Single-head accuracies are stored as a number, multi-head ones as a list (one per head)."""
    if accs is None:
        return None
    return accs[0] if len(accs) == 1 else accs
