"""Whole-tensor image conversions shared by the file-based sets: layout, channel count and resolution."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..core.errors import DataError

if TYPE_CHECKING:
    import torch


def layout(shape: tuple[int, ...], source: str) -> str:
    """Which of N×H×W, N×H×W×C (channels last, checked first) or N×C×H×W (C ≤ 4) an array's shape is."""
    if len(shape) == 3:
        return "NHW"
    if len(shape) == 4 and shape[3] <= 4:
        return "NHWC"
    if len(shape) == 4 and shape[1] <= 4:
        return "NCHW"
    raise DataError(f"{source}: expected images N×H×W, N×H×W×C or N×C×H×W (C ≤ 4), got shape {tuple(shape)}")


def chw(shape: tuple[int, ...], source: str) -> tuple[int, int, int]:
    """The (C, H, W) of one image of an array with `shape`."""
    kind = layout(shape, source)
    if kind == "NHW":
        return (1, shape[1], shape[2])
    return (shape[3], shape[1], shape[2]) if kind == "NHWC" else (shape[1], shape[2], shape[3])


def to_nchw(x: np.ndarray, source: str) -> torch.Tensor:
    """An image array in any of the layouts above → (N, C, H, W), sharing memory (a view, no copy)."""
    import torch

    t = torch.from_numpy(x)
    kind = layout(x.shape, source)
    if kind == "NHW":
        return t.unsqueeze(1)
    return t.permute(0, 3, 1, 2) if kind == "NHWC" else t


def set_channels(x: torch.Tensor, channels: int | None) -> torch.Tensor:
    """Force 1 (grey, ITU-R 601 luma as PIL's 'L') or 3 channels (grey repeated); None keeps them."""
    have = int(x.shape[1])
    if channels is None or have == channels:
        return x
    if channels == 3 and have == 1:
        return x.expand(-1, 3, -1, -1).contiguous()
    if channels == 1 and have in (3, 4):
        from torchvision.transforms.v2 import functional as TF  # torchvision's import costs a second

        return TF.rgb_to_grayscale(x[:, :3])
    raise DataError(f"cannot turn {have}-channel images into {channels} channels (data.channels)")


def resize(x: torch.Tensor, resolution: list[int] | None, chunk: int = 4096) -> torch.Tensor:
    """Resize (N, C, H, W) to `resolution` [h, w] (antialiased bilinear, uint8 stays uint8); None keeps it.

    Chunked so resizing a 60,000-image set does not hold a float copy of all of it at once.
    """
    import torch

    if resolution is None or list(x.shape[-2:]) == list(resolution):
        return x
    from torchvision.transforms.v2 import functional as TF

    parts = [TF.resize(x[i : i + chunk], list(resolution), antialias=True) for i in range(0, len(x), chunk)]
    return torch.cat(parts) if parts else x.new_empty((0, x.shape[1], *resolution))


def shape_images(x: torch.Tensor, channels: int | None, resolution: list[int] | None) -> torch.Tensor:
    """Apply `data.channels` and `data.resolution` to a whole (N, C, H, W) tensor."""
    return resize(set_channels(x, channels), resolution)
