"""Memory checks made before any work starts, so an absurd config fails with one line instead of the OOM
killer; the CPU cores free for a run; and the C allocator's settings for the training loop."""

from __future__ import annotations

import ctypes
import os
from typing import TYPE_CHECKING

from .cgroups import cgroup_memory_headroom, meminfo_available, usable_cores  # noqa: F401 - usable_cores re-exported
from .errors import ConfigError

if TYPE_CHECKING:
    import torch


def memory_bytes(device: torch.device | None = None) -> int:
    """Physical memory of the machine, or of the GPU for a CUDA device."""
    if device is not None and device.type == "cuda":
        import torch

        return int(torch.cuda.get_device_properties(device).total_memory)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # not POSIX: no check
        return 1 << 62


def check_fits(nbytes: int, what: str, path: str, device: torch.device | None = None) -> None:
    """ConfigError naming `path` if `nbytes` exceed the memory available to this process on `device`: the
    GPU's free memory, or on the CPU the machine's available memory and the headroom of its memory cgroup."""
    total, where = available_memory(device)
    if nbytes > total:
        raise ConfigError(f"{what} needs about {nbytes / 2**30:.1f} GiB, more than {where}", path=path)


def available_memory(device: torch.device | None = None) -> tuple[int, str]:
    """Bytes this process can still allocate on `device` (CPU when None), and how to say where they are."""
    if device is not None and device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free), f"the {free / 2**30:.1f} GiB free on the GPU"
    total = memory_bytes()
    avail, where = total, f"this machine's {total / 2**30:.1f} GiB"
    meminfo = meminfo_available()
    if meminfo is not None and meminfo < avail:
        avail, where = meminfo, f"the {meminfo / 2**30:.1f} GiB available on this machine"
    headroom = cgroup_memory_headroom()
    if headroom is not None and headroom < avail:
        avail, where = headroom, f"the {headroom / 2**30:.1f} GiB left under this process's memory cgroup limit"
    return avail, where


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


_KEEPING: bool | None = None  # keep_freed_memory()'s result in this process (None: not asked yet)


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed memory for the next step's tensors instead of returning it to the OS.

    By default glibc serves large blocks (a batch's activations and their gradients, 0.1–30 MiB) with a
    fresh mmap and gives freed memory at the top of the heap back once more than a few MiB are free, so a
    training step can start by page-faulting its working set again: measured on the flowers CNN at batch
    10, 1,300 page faults a step and 30–60% more time per step, in some processes and not others. Here
    blocks up to 32 MiB (glibc's limit) come from the heap and up to 1 GiB of free heap is kept: the
    process stays at its peak memory, which a training run reaches every step anyway. PyTorch's CPU
    tuning guide gets the same effect by preloading jemalloc or tcmalloc. Process-wide and not undone;
    returns whether it took effect (False off glibc: macOS, Windows, musl).
    """
    global _KEEPING
    if _KEEPING is None:
        _KEEPING = False
        try:
            glibc = os.confstr("CS_GNU_LIBC_VERSION") or ""
            mallopt = ctypes.CDLL(None).mallopt if glibc.startswith("glibc") else None
        except (ValueError, OSError, AttributeError):
            mallopt = None
        if mallopt is not None:
            m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
            _KEEPING = bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 1 << 30))
    return _KEEPING


def freed_memory_kept() -> bool:
    """Whether keep_freed_memory() has taken effect in this process (it is not undone by a later run with
    `train.reuse_memory: false`; the summary records this)."""
    return bool(_KEEPING)
