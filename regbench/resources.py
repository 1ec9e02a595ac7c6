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


def free_cores(sample_s: float = 0.1) -> int:
    """CPU cores not busy with other processes right now (at least 1), from two /proc/stat samples.

    OpenMP threads spin while they wait for each other; when another process holds a core, torch's default
    of one thread per core makes a small model's steps 30–100× slower, while one thread per free core
    keeps full speed. Falls back to all cores where /proc/stat is unreadable.
    """
    import time

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

    def read() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields), idle

    try:
        total0, idle0 = read()
        time.sleep(sample_s)
        total1, idle1 = read()
    except (OSError, ValueError, IndexError):
        return cores
    ncpu = os.cpu_count() or cores
    busy = ncpu * (1 - (idle1 - idle0) / max(total1 - total0, 1))  # cores busy with others while we slept
    return max(1, min(cores, round(cores - busy)))
