"""Getting an archive onto disk safely: download (one small urllib function), SHA-256 check, extraction.

Extraction refuses, before writing anything, any member whose path is absolute or has a `..` part, links
that point outside the folder, and devices; it extracts into a temporary folder next to the target and
renames the finished folder into place, so a failure at any step leaves no half set behind.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from ..core.errors import DataError
from ..core.version import __version__


def download(url: str, dest: Path) -> None:
    """Stream `url` into the file `dest` (the only network access of regbench; tests replace it)."""
    request = urllib.request.Request(url, headers={"User-Agent": f"regbench/{__version__}"})
    with urllib.request.urlopen(request, timeout=60) as response, open(dest, "wb") as f:
        shutil.copyfileobj(response, f, 1 << 20)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def unsafe_reason(member: tarfile.TarInfo) -> str | None:
    """Why extracting `member` could write outside the target folder (None when it is safe)."""
    name = member.name
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if ".." in re.split(r"[/\\]", name):
        return "'..' in the path"
    if member.issym() or member.islnk():
        link = member.linkname
        # a symlink is relative to its own folder, a hard link to the archive's top
        base = posixpath.dirname(name) if member.issym() else ""
        target = posixpath.normpath(posixpath.join(base, link))
        if link.startswith(("/", "\\")) or target == ".." or target.startswith("../"):
            return f"link to {link!r} outside the folder"
    elif not (member.isfile() or member.isdir()):
        return "device or fifo"
    return None


def safe_extract(archive: Path, dest: Path) -> None:
    """Extract the tar archive `archive` (any compression) into `dest`, refusing unsafe members first."""
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for m in members:
                why = unsafe_reason(m)
                if why:
                    raise DataError(f"{archive}: refusing to extract {m.name!r} ({why}); nothing was extracted")
            # tarfile's own 'data' filter (Python ≥ 3.11.4) checks once more while writing
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(dest, members=members, **extra)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"{archive}: cannot extract ({e}); nothing was kept") from None


def fetch_archive(name: str, url: str, sha256: str, root: Path, folder: str) -> Path:
    """Download `url`, check its SHA-256, extract it, and move its top folder `folder` to `root/folder`.

    Everything happens in a temporary folder inside `root` that is removed at the end, so a failed
    download, a checksum mismatch or a refused member leaves `root` as it was. Returns the set's folder.
    """
    target = root / folder
    if target.is_dir() and any(target.iterdir()):
        return target
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{folder}.fetch-", dir=root))
    try:
        file = work / (Path(urlsplit(url).path).name or "archive")
        try:
            download(url, file)
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", None) or e
            raise DataError(
                f"data set '{name}': download of {url} failed ({reason}); download it on a machine with"
                f" internet and extract it into {root}/"
            ) from None
        got = sha256_of(file)
        if got != sha256:
            raise DataError(
                f"data set '{name}': {url} has SHA-256 {got}, expected {sha256}; the download is damaged"
                " or the archive changed, so nothing was extracted"
            )
        out = work / "extracted"
        safe_extract(file, out)
        if not (out / folder).is_dir():
            raise DataError(f"data set '{name}': the archive has no {folder}/ folder; nothing was kept")
        try:
            os.replace(out / folder, target)  # atomic on one file system; an empty target is replaced
        except OSError as e:
            if not (target.is_dir() and any(target.iterdir())):  # else a concurrent fetch got there first
                raise DataError(f"data set '{name}': cannot move the extracted files to {target} ({e})") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
