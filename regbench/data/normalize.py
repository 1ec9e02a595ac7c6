"""`data.normalize`: how pixel values reach the model, with statistics taken from the training split only.

- `none`: the values as the format stores them (the book feeds raw 0–255 pixels of its photo sets).
- `unit`: ÷ the format's full intensity (255 for 8-bit images, 16 for digits), as the homework sets do.
- `standardize`: (x − mean) / std per channel (per feature for flat vectors).
- `center`: (x − mean) / max|x − mean| with one mean over the whole training split, the CIFAR-10
  workshop's input centering (its values land in −1…1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.errors import ConfigError

if TYPE_CHECKING:
    import torch

MODES = ("none", "unit", "standardize", "center")


def normalize(ds, mode: str, scale: float | None, note_unscaled: bool = True) -> dict[str, list[float] | float | str]:
    """Convert every split of `ds` (a Dataset) to float32 and normalize it in place; returns the statistics,
    with a `note` when `none` leaves values that look unscaled (and `note_unscaled`)."""
    import torch

    for split in ds.x:
        ds.x[split] = ds.x[split].float()
    train = ds.x["train"]
    if mode == "none":
        note = unscaled_note(train, scale) if note_unscaled else None
        return {"mode": mode, "note": note} if note else {"mode": mode}
    if mode == "unit":
        if scale is None:
            raise ConfigError(
                "unit needs pixels with a known maximum (8-bit images, digits) and this set holds float"
                " values; use none, standardize or center",
                path="data.normalize",
            )
        shift, div = torch.zeros(()), torch.tensor(float(scale))
    elif mode == "standardize":
        shift, div = channel_stats(train)
    elif mode == "center":
        shift = train.mean()
        div = torch.maximum(train.max() - shift, shift - train.min())  # max|x − mean| without a copy of x
    else:  # the schema only lets the MODES through
        raise ValueError(f"unknown normalize mode {mode!r}")
    div = torch.where(div > 0, div, torch.ones_like(div))  # a constant channel stays constant, not inf
    for split in ds.x:
        ds.x[split] = ds.x[split].sub_(shift).div_(div)
    return {"mode": mode, "shift": shift.flatten().tolist(), "div": div.flatten().tolist()}


def unscaled_note(train: torch.Tensor, scale: float | None) -> str | None:
    """One line when inputs fed as stored look unscaled: a mean |value| above 2 (0–1, −1…1 and standardized
    inputs stay below 1; raw 0–255 pixels average about 100, raw digits about 5)."""
    level = float(train.abs().mean()) if train.numel() else 0.0
    if level <= 2.0:
        return None
    hint = "unit (÷255)" if scale == 255.0 else f"unit (÷{scale:g})" if scale else "standardize or center"
    return (
        f"inputs look unscaled (normalize: none, mean |x| = {level:.1f}, max {float(train.abs().max()):g});"
        f" set data.normalize to {hint} unless that is meant"
    )


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (population) std per channel of (N, C, H, W), or per feature of (N, F), shaped to broadcast."""
    import torch

    if x.dim() == 4:
        std, mean = torch.std_mean(x, dim=(0, 2, 3), correction=0, keepdim=True)
        return mean[0], std[0]
    std, mean = torch.std_mean(x, dim=0, correction=0, keepdim=True)
    return mean[0], std[0]


def apply_recorded(x: torch.Tensor, stats: dict) -> torch.Tensor:
    """Normalize new samples `x` ((N, C, H, W) or (N, F), values as the data set's files store them) with
    the statistics `normalize` returned for a run's training split (its summary's `normalization`)."""
    import torch

    x = x.float()
    if stats.get("mode", "none") == "none":
        return x
    shift, div = torch.tensor(stats["shift"]), torch.tensor(stats["div"])
    if shift.numel() == 1:
        shift, div = shift.reshape(()), div.reshape(())
    elif x.dim() == 4:  # per channel
        shift, div = shift.reshape(-1, 1, 1), div.reshape(-1, 1, 1)
    return (x - shift) / div
