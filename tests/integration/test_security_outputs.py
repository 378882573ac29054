"""Issue 8, finding 7: ``--output type=local`` is safe to unpack as root.

A base image carrying a 0666 block device and character device, and setuid/setgid-root
files (its own, and made by ``COPY --chmod=4755``), exported with ``type=local``: no
device node is created on the host and no file is setuid or setgid there; a warning says
what was left out. ``devices=true`` and ``setuid=true`` bring them back on request.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import uuid
from pathlib import Path

import pytest

from tests.conftest import RunDistill
from tests.helpers.rootless import ROOTLESS

pytestmark = pytest.mark.integration

SECRET = "canary-secret-output-51d2\n"
DEVICES = {"dev/sda": (tarfile.BLKTYPE, 8, 0), "dev/mem": (tarfile.CHRTYPE, 1, 1)}


def _hostile_base(busybox_tar: Path, dest: Path) -> Path:
    with tarfile.open(busybox_tar) as src, \
            tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as out:
        for member in src.getmembers():
            out.addfile(member, src.extractfile(member) if member.isfile() else None)
        dev = tarfile.TarInfo("dev")
        dev.type, dev.mode = tarfile.DIRTYPE, 0o755
        out.addfile(dev)
        for name, (kind, major, minor) in DEVICES.items():
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.devmajor, info.devminor = kind, 0o666, major, minor
            out.addfile(info)
        for name, mode in (("bin/rootshell", 0o4755), ("bin/groupshell", 0o2755)):
            info = tarfile.TarInfo(name)
            info.mode, info.size = mode, 5
            out.addfile(info, io.BytesIO(b"#!x\n\n"))
        shared = tarfile.TarInfo("shared")
        shared.type, shared.mode = tarfile.DIRTYPE, 0o2775
        out.addfile(shared)
    return dest


@pytest.fixture(scope="module")
def hostile_build(tmp_path_factory: pytest.TempPathFactory, distill: RunDistill,
                  busybox_tar: Path) -> Path:
    """A context whose Dockerfile builds on the hostile base and adds setid files."""
    base = tmp_path_factory.mktemp("hostile-output")
    name = f"devices-{uuid.uuid4().hex[:8]}:1"
    distill("import", str(_hostile_base(busybox_tar, base / "base.tar")), name)
    ctx = base / "ctx"
    ctx.mkdir()
    (ctx / "tool").write_text("#!/bin/sh\necho tool\n")
    (ctx / "Dockerfile").write_text(f"FROM {name}\n"
                                    "COPY --chmod=4755 tool /tool\n"
                                    "COPY --chmod=2755 tool /tool-g\n"
                                    "RUN echo ran > /ran\n")
    return ctx


def _canary(tmp_path: Path) -> Path:
    canary = tmp_path / "outside" / "canary.txt"
    canary.parent.mkdir()
    canary.write_text(SECRET)
    return canary


def _entries(out: Path) -> dict[str, os.stat_result]:
    found = {}
    for dirpath, dirnames, filenames in os.walk(out):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            found[str(path.relative_to(out))] = os.lstat(path)
    return found


def test_local_output_has_no_devices_and_no_setid_files(
        distill: RunDistill, hostile_build: Path, tmp_path: Path) -> None:
    canary = _canary(tmp_path)
    out = tmp_path / "out"
    proc = distill("build", "--output", f"type=local,dest={out}", str(hostile_build))
    entries = _entries(out)
    devices = [p for p, st in entries.items()
               if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)]
    assert devices == [], f"device nodes on the host: {devices}"
    setid = [p for p, st in entries.items()
             if not stat.S_ISDIR(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID)]
    assert setid == [], f"setuid/setgid files on the host: {setid}"
    for path in ("tool", "tool-g", "bin/rootshell", "bin/groupshell"):
        assert stat.S_IMODE(entries[path].st_mode) == 0o755, path
    assert (out / "tool").read_text() == "#!/bin/sh\necho tool\n"
    assert (out / "ran").read_text() == "ran\n"
    assert stat.S_IMODE(entries["shared"].st_mode) == 0o2775, "directories keep setgid"
    if not ROOTLESS:   # rootless, unpacking the image made no device node to leave out
        assert "warning: --output type=local: 2 device nodes not created (/dev/mem, " \
            "/dev/sda)" in proc.stderr, proc.stderr
        assert "devices=true" in proc.stderr
    assert "setuid/setgid bits cleared on 4 files" in proc.stderr, proc.stderr
    assert "setuid=true" in proc.stderr
    assert canary.read_text() == SECRET
    for path, st in entries.items():
        if stat.S_ISREG(st.st_mode):
            assert SECRET.encode() not in (out / path).read_bytes()


def _refused_rootless(distill: RunDistill, out: Path, options: str, ctx: Path) -> None:
    proc = distill("build", "--output", f"type=local,dest={out},{options}", str(ctx),
                   check=False)
    assert proc.returncode == 2, proc.stderr
    assert "devices=true needs root: a rootless build may not create device nodes" \
        in proc.stderr, proc.stderr


def test_local_output_devices_and_setuid_on_request(
        distill: RunDistill, hostile_build: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    if ROOTLESS:
        _refused_rootless(distill, out, "devices=true,setuid=true", hostile_build)
        return
    proc = distill("build", "--output", f"type=local,dest={out},devices=true,setuid=true",
                   str(hostile_build))
    assert "warning: --output" not in proc.stderr, proc.stderr
    entries = _entries(out)
    for name, (kind, major, minor) in DEVICES.items():
        st = entries[name]
        is_kind = stat.S_ISBLK if kind == tarfile.BLKTYPE else stat.S_ISCHR
        assert is_kind(st.st_mode), name
        assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (major, minor), name
        assert stat.S_IMODE(st.st_mode) == 0o666
    for path, mode in (("tool", 0o4755), ("tool-g", 0o2755), ("bin/rootshell", 0o4755),
                       ("bin/groupshell", 0o2755)):
        assert stat.S_IMODE(entries[path].st_mode) == mode, path
        assert entries[path].st_uid == 0


def test_only_devices_on_request(distill: RunDistill, hostile_build: Path,
                                 tmp_path: Path) -> None:
    out = tmp_path / "out"
    if ROOTLESS:
        _refused_rootless(distill, out, "devices=true", hostile_build)
        return
    proc = distill("build", "--output", f"type=local,dest={out},devices=true",
                   str(hostile_build))
    assert stat.S_ISBLK(os.lstat(out / "dev/sda").st_mode)
    assert stat.S_IMODE(os.lstat(out / "tool").st_mode) == 0o755
    assert "setuid=true" in proc.stderr and "devices=true" not in proc.stderr
