"""Memory checks made before any work starts, so an absurd config fails with one line instead of the OOM killer."""

from __future__ import annotations

import os

import torch

from .errors import ConfigError


def memory_bytes(device: torch.device | None = None) -> int:
    """Physical memory of the machine, or of the GPU for a CUDA device."""
    if device is not None and device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # not POSIX: no check
        return 1 << 62


def check_fits(nbytes: int, what: str, path: str, device: torch.device | None = None) -> None:
    """ConfigError naming `path` if `nbytes` exceed the memory of `device` (or of this machine)."""
    total = memory_bytes(device)
    if nbytes > total:
        where = (
            f"the GPU's {total / 2**30:.1f} GiB"
            if device is not None and device.type == "cuda"
            else f"this machine's {total / 2**30:.1f} GiB"
        )
        raise ConfigError(f"{what} needs about {nbytes / 2**30:.1f} GiB, more than {where}", path=path)
