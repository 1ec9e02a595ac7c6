"""The decode cache: an image folder is decoded and resized once, then read back as one uint8 tensor.

Entries live in `.regbench-cache/` next to the images, named by a hash of everything the pixels depend on
(the tree, its relative file list with sizes and mtimes, the resolution and channel count), so a changed
file or setting makes a new entry instead of a stale read. Writes go to a temporary file that is renamed
into place, so concurrent runs and a crash mid-write never leave a half entry under the real name.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


CACHE_DIR = ".regbench-cache"
VERSION = 1  # bump when the decoding changes, so old entries are not read


def cache_key(tree: Path, files: list[str], resolution: list[int], channels: int) -> str:
    """Hash of the tree's path, each file's relative path, size and mtime, and the decode settings."""
    h = hashlib.sha256()
    h.update(json.dumps([VERSION, str(tree.resolve()), list(resolution), channels]).encode())
    for rel in files:
        st = (tree / rel).stat()
        h.update(json.dumps([rel, st.st_size, st.st_mtime_ns]).encode())
    return h.hexdigest()[:32]


def read_cached(file: Path) -> torch.Tensor | None:
    """The cached uint8 tensor, or None when there is none (or it cannot be read: it is then rebuilt)."""
    import torch

    try:
        x = torch.load(file, weights_only=True)
    except Exception:  # missing, or damaged: rebuilt, never trusted
        return None
    return x if isinstance(x, torch.Tensor) and x.dtype == torch.uint8 else None


def write_cached(file: Path, x: torch.Tensor) -> None:
    """Store `x` at `file` atomically: a uniquely named temporary file in the same folder, then os.replace.

    A folder that cannot be written (read-only data) only costs the next run the decoding again.
    """
    import torch

    tmp = file.with_name(f".{file.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "xb") as f:  # created with the usual permissions (umask), unlike mkstemp's 0600
            torch.save(x.contiguous(), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, file)
    except OSError:
        tmp.unlink(missing_ok=True)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
