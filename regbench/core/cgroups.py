"""What the kernel lets this process use: memory (MemAvailable, the memory cgroup's headroom) and CPU cores
(affinity, the CPU cgroup's quota), for cgroup v1 and v2. No torch here: `config` checks `train.threads`."""

from __future__ import annotations

import functools
import os
from pathlib import Path


def meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_files(v2: str, v1_controller: str, v1: str) -> list[Path]:
    """Candidate paths of a cgroup control file for this process (v2 unified and v1), most specific first."""
    root = Path(CGROUP_ROOT)
    found = []
    try:
        lines = Path("/proc/self/cgroup").read_text(encoding="ascii").splitlines()
    except OSError:
        lines = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        rel = parts[2].lstrip("/")
        if parts[0] == "0" and parts[1] == "":
            found += [root / rel / v2, root / "unified" / rel / v2]
        elif v1_controller in parts[1].split(","):
            found.append(root / parts[1] / rel / v1)
    found += [root / v2, root / v1_controller / v1, root / "unified" / v2]
    return found


def _read_int(files: list[Path]) -> int | None:
    for file in files:
        try:
            text = file.read_text(encoding="ascii").split()
        except OSError:
            continue
        if text and text[0].isdigit():
            return int(text[0])
        if text and text[0] == "max":
            return None
    return None


CGROUP_ROOT = "/sys/fs/cgroup"
NO_LIMIT = 1 << 60  # cgroup v1 writes "no limit" as a page-rounded 2**63


def cgroup_memory_headroom() -> int | None:
    """The memory cgroup's limit minus its current usage (v2 memory.max/current, v1 limit_in_bytes/
    usage_in_bytes), or None without a limit."""
    limit = _read_int(_cgroup_files("memory.max", "memory", "memory.limit_in_bytes"))
    if limit is None or limit >= NO_LIMIT:
        return None
    usage = _read_int(_cgroup_files("memory.current", "memory", "memory.usage_in_bytes")) or 0
    return max(0, limit - usage)


@functools.lru_cache(maxsize=1)
def usable_cores() -> int:
    """CPU cores this process may use: its affinity, bounded by a cgroup CPU quota (v2 cpu.max, v1 cfs).
    Read once per process (every TrainConfig checks `train.threads` against it)."""
    import math

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    for file in _cgroup_files("cpu.max", "cpu", "cpu.cfs_quota_us"):
        try:
            text = file.read_text(encoding="ascii").split()
        except OSError:
            continue
        quota = text[0] if text else "max"
        if file.name == "cpu.max":
            period = text[1] if len(text) > 1 else "100000"
        else:
            try:
                period = (file.parent / "cpu.cfs_period_us").read_text(encoding="ascii").strip()
            except OSError:
                period = "100000"
        if quota.lstrip("-").isdigit() and int(quota) > 0 and period.isdigit() and int(period) > 0:
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
        break
    return max(1, cores)
