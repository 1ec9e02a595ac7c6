"""Each run's per-example test predictions, saved compactly in its directory (`test_pred.npz`: the predicted
class and the label of every test example, per head, in the smallest integer type that holds the classes),
so that two single runs can be compared example by example (compare's McNemar test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

PREDICTIONS = "test_pred.npz"


def _small(a: np.ndarray) -> np.ndarray:
    top = int(a.max(initial=0))
    return a.astype(np.uint8 if top < 256 else np.uint16 if top < 65536 else np.int64)


def save_predictions(path: Path, probs: list, answers) -> None:
    """Write `test_pred.npz` in run directory `path`: `pred` and `label`, each (N_test, heads).
    `probs` are per-head (N_test, classes) tensors, `answers` the (N_test, heads) labels."""
    pred = np.stack([p.argmax(1).cpu().numpy() for p in probs], axis=1)
    np.savez_compressed(path / PREDICTIONS, pred=_small(pred), label=_small(answers.cpu().numpy()))


def correct_on_test(path: Path, head: int = 0) -> tuple[np.ndarray, np.ndarray] | None:
    """(labels, per-example correctness) of head `head` of the run in `path`, or None when the run has no
    saved predictions (an older run, or one without a test split)."""
    file = path / PREDICTIONS
    if not file.is_file():
        return None
    try:
        with np.load(file) as data:
            pred, label = data["pred"][:, head].astype(np.int64), data["label"][:, head].astype(np.int64)
    except (OSError, KeyError, ValueError, IndexError):
        return None
    return label, pred == label
