"""`regbench data fetch flowers`: pinned SHA-256, safe extraction, and no half set left on any failure."""

from __future__ import annotations

import io
import shutil
import tarfile
import urllib.error

import datafiles as df
import pytest
from typer.testing import CliRunner

from regbench.cli.main import app
from regbench.core.errors import DataError
from regbench.data import fetch, flowers
from regbench.data.fetch import safe_extract, sha256_of

runner = CliRunner()


def flower_archive(tmp_path):
    """A tiny flower_photos.tgz laid out as TensorFlow's: flower_photos/<class>/*.jpg plus LICENSE.txt."""
    src = tmp_path / "src"
    df.write_image_tree(src / "flower_photos", flowers.CLASSES, per_class=2)
    (src / "flower_photos" / "LICENSE.txt").write_text("CC-BY 2.0")
    archive = tmp_path / "flower_photos.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src / "flower_photos", arcname="flower_photos")
    return archive


def archive_with(tmp_path, extra: tarfile.TarInfo):
    """A tar with one harmless file and `extra` (a member built by `member`)."""
    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as tar:
        ok = tarfile.TarInfo("flower_photos/ok.txt")
        ok.size = 1
        tar.addfile(ok, io.BytesIO(b"1"))
        if extra.isfile():
            extra.size = 1
            tar.addfile(extra, io.BytesIO(b"x"))
        else:
            tar.addfile(extra)
    return path


def local_download(archive):
    def download(url, dest):
        shutil.copyfile(archive, dest)

    return download


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    m = tarfile.TarInfo(name)
    m.type, m.linkname = kind, linkname
    return m


@pytest.mark.parametrize(
    "entry, why",
    [
        (member("flower_photos/../../escape.txt"), "'..' in the path"),
        (member("/tmp/regbench-absolute.txt"), "absolute path"),
        (
            member("flower_photos/link", tarfile.SYMTYPE, "../../etc"),
            "link to '../../etc' outside the folder",
        ),
        (member("flower_photos/hard", tarfile.LNKTYPE, "/etc/passwd"), "outside the folder"),
        (member("flower_photos/dev", tarfile.CHRTYPE), "device or fifo"),
    ],
)
def test_unsafe_members_are_refused_before_anything_is_written(tmp_path, entry, why):
    path = archive_with(tmp_path, entry)
    dest = tmp_path / "out"
    with pytest.raises(DataError, match=f"refusing to extract .*{why}.*; nothing was extracted"):
        safe_extract(path, dest)
    assert not dest.exists() and not (tmp_path / "escape.txt").exists()


def test_links_inside_the_folder_are_fine(tmp_path):
    link = member("flower_photos/alias.txt", tarfile.SYMTYPE, "ok.txt")
    safe_extract(archive_with(tmp_path, link), tmp_path / "out")
    assert (tmp_path / "out" / "flower_photos" / "alias.txt").read_text() == "1"


def test_fetch_with_the_pinned_hash_extracts_into_place(tmp_path, monkeypatch):
    archive = flower_archive(tmp_path)
    monkeypatch.setattr(fetch, "download", local_download(archive))
    monkeypatch.setattr(flowers, "SHA256", sha256_of(archive))
    root = tmp_path / "data"
    res = runner.invoke(app, ["data", "fetch", "flowers", "--root", str(root)])
    assert res.exit_code == 0, res.output
    assert f"flowers: ready in {root / 'flower_photos'}" in res.output
    assert sorted(p.name for p in (root / "flower_photos").iterdir()) == ["LICENSE.txt", *flowers.CLASSES]
    assert [p.name for p in root.iterdir()] == ["flower_photos"]  # no archive or temporary folder left
    res = runner.invoke(app, ["data", "fetch", "flowers", "--root", str(root)])  # already there: no download
    assert res.exit_code == 0


def test_a_hash_mismatch_leaves_nothing(tmp_path, monkeypatch):
    archive = flower_archive(tmp_path)
    monkeypatch.setattr(fetch, "download", local_download(archive))  # the real pin: this archive differs
    root = tmp_path / "data"
    res = runner.invoke(app, ["data", "fetch", "flowers", "--root", str(root)])
    assert res.exit_code == 2 and res.output.count("error:") == 1
    assert f"SHA-256 {sha256_of(archive)}, expected {flowers.SHA256}" in res.output
    assert list(root.iterdir()) == []


def test_a_refused_member_in_the_download_leaves_nothing(tmp_path, monkeypatch):
    bad = archive_with(tmp_path, member("flower_photos/../x.txt"))
    monkeypatch.setattr(fetch, "download", local_download(bad))
    monkeypatch.setattr(flowers, "SHA256", sha256_of(bad))
    with pytest.raises(DataError, match="refusing to extract"):
        flowers.fetch(flowers.DataConfig(name="flowers", root=str(tmp_path / "data")))
    assert list((tmp_path / "data").iterdir()) == [] and not (tmp_path / "x.txt").exists()


def test_a_failed_download_is_one_line(tmp_path, monkeypatch):
    def offline(url, dest):
        dest.write_bytes(b"partial")
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(fetch, "download", offline)
    res = runner.invoke(app, ["data", "fetch", "flowers", "--root", str(tmp_path)])
    assert res.exit_code == 2 and "download of https://" in res.output and "Name or service not known" in res.output
    assert list(tmp_path.iterdir()) == []


def test_download_true_fetches_before_training(tmp_path, monkeypatch):
    archive = flower_archive(tmp_path)
    monkeypatch.setattr(fetch, "download", local_download(archive))
    monkeypatch.setattr(flowers, "SHA256", sha256_of(archive))
    cfg = tmp_path / "f.yaml"
    cfg.write_text(
        f"data: {{name: flowers, root: {tmp_path / 'data'}, download: true, resolution: [8, 8]}}\n"
        "model: {layers: [8]}\ntrain: {epochs: 1, show: 0, batch_size: 1}\n"  # the archive has one training image
    )
    res = runner.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "runs"), "-q"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "data" / "flower_photos" / "tulips").is_dir()


def test_fetch_refuses_sets_it_cannot_download(tmp_path):
    res = runner.invoke(app, ["data", "fetch", "office31", "--root", str(tmp_path)])
    assert res.exit_code == 2 and "regbench cannot download 'office31'; put its files at" in res.output
    res = runner.invoke(app, ["data", "fetch", "nope"])
    assert res.exit_code == 2 and "unknown data set 'nope'; allowed: digits" in res.output
