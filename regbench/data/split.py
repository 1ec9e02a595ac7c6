"""Seeded splitting in the book's ratios: stratified (every class in proportion in every split) by default,
or the book's plain shuffle (`data.split.stratify: false`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def class_ids(y: torch.Tensor) -> np.ndarray:
    """One integer per sample for its combination of labels over all heads."""
    y = y.cpu().numpy().astype(np.int64)
    if y.ndim == 1:
        return y
    _, ids = np.unique(y, axis=0, return_inverse=True)
    return ids.reshape(-1)


def stratified_order(ids: np.ndarray) -> np.ndarray:
    """Reorder positions so that every prefix holds each class in proportion to its count.

    Each sample gets the key (rank within its class + 0.5) / class size; sorting by it interleaves the
    classes evenly while keeping their current (shuffled) order.
    """
    n = len(ids)
    if n == 0:
        return np.arange(0)
    counts = np.bincount(ids)
    order = np.argsort(ids, kind="stable")
    rank = np.empty(n, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank[order] = np.arange(n) - np.repeat(starts, counts)
    key = (rank + 0.5) / counts[ids]
    return np.argsort(key, kind="stable")


def split_indices(
    y: torch.Tensor, train: float, val: float, seed: int, book_rounding: bool = True, stratify: bool = True
) -> dict[str, torch.Tensor]:
    """Shuffle with `seed`, stratify (unless `stratify` is false: the book's plain shuffle), and cut into
    train/val/test index tensors.

    As the book's shuffle_data: train = int(N·train / 10)·10 samples (a multiple of its batch size 10),
    val = int(N·val), test = the rest.
    """
    import torch

    n = int(y.shape[0])
    g = np.random.default_rng(seed)
    perm = g.permutation(n)
    order = perm[stratified_order(class_ids(y[torch.as_tensor(perm)]))] if stratify else perm
    n_train = int(n * train / 10) * 10 if book_rounding else int(n * train)
    n_train = max(n_train, min(n, 1))
    n_val = int(n * val)
    cuts = {
        "train": order[:n_train],
        "val": order[n_train : n_train + n_val],
        "test": order[n_train + n_val :],
    }
    return {k: torch.as_tensor(v, dtype=torch.long) for k, v in cuts.items()}


def stratified_take(y: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """Indices of `count` samples of `y`, every class in proportion (for `data.limit`)."""
    import torch

    perm = np.random.default_rng(seed + 1).permutation(int(y.shape[0]))
    order = perm[stratified_order(class_ids(y[torch.as_tensor(perm)]))]
    return torch.as_tensor(np.sort(order[:count]), dtype=torch.long)
