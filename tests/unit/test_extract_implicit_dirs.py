"""Unpacking a layer gives the same tree every time, directories it does not list too."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

from distill.sandbox.layers import extract_layer


def test_directories_a_layer_does_not_list_are_dated_1970(tmp_path: Path) -> None:
    """Regression (second outsider review): such a directory (the parent of an entry)
    took the time it was unpacked, so two exports of one image (type=tar, type=local)
    differed even with SOURCE_DATE_EPOCH. A directory the layer lists later keeps its
    own time."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("a/b/file")
        info.size, info.mtime = 2, 1234567890
        tar.addfile(info, io.BytesIO(b"x\n"))
        listed = tarfile.TarInfo("c/listed")
        listed.type, listed.mtime, listed.mode = tarfile.DIRTYPE, 1500000000, 0o750
        tar.addfile(listed)
        later = tarfile.TarInfo("c")
        later.type, later.mtime, later.mode = tarfile.DIRTYPE, 1600000000, 0o700
        tar.addfile(later)
    for attempt in ("one", "two"):
        dest = tmp_path / attempt
        dest.mkdir()
        extract_layer(io.BytesIO(out.getvalue()), dest)
        assert os.lstat(dest / "a").st_mtime == 0
        assert os.lstat(dest / "a" / "b").st_mtime == 0
        assert os.lstat(dest / "a").st_mode & 0o7777 == 0o755
        assert os.lstat(dest / "a" / "b" / "file").st_mtime == 1234567890
        assert os.lstat(dest / "c").st_mtime == 1600000000
        assert os.lstat(dest / "c").st_mode & 0o7777 == 0o700
        assert os.lstat(dest / "c" / "listed").st_mtime == 1500000000
