"""ADD's remote sources for real: a local HTTP server and local git repositories."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from distill.builder.add import AddOptions, fetch_git, fetch_url
from distill.errors import ContextError
from tests.conftest import RunDistill
from tests.helpers.httpserve import serve_directory
from tests.helpers.rootless import owner

pytestmark = pytest.mark.integration

PAYLOAD = b"hello from the server\n" * 100
MTIME = 1_500_000_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("www")
    (root / "files").mkdir()
    (root / "files/data.txt").write_bytes(PAYLOAD)
    os.utime(root / "files/data.txt", (MTIME, MTIME))
    with serve_directory(root) as url:
        yield url


GOOD = "sha256:" + hashlib.sha256(PAYLOAD).hexdigest()


def test_fetch_url_good_checksum(server: str, tmp_path: Path) -> None:
    url = f"{server}/files/data.txt"
    with fetch_url(url, tmp_path, AddOptions(host_network=True, checksum=GOOD)) as path:
        assert path == tmp_path / "download"        # distill's own name, not the URL's
        assert path.read_bytes() == PAYLOAD
        st = path.stat()
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert int(st.st_mtime) == MTIME          # from Last-Modified
    assert not path.exists()                        # removed on exit


def test_fetch_url_without_checksum_with_client(server: str, tmp_path: Path) -> None:
    with httpx.Client() as client, \
            fetch_url(f"{server}/files/data.txt?x=1", tmp_path, AddOptions(host_network=True),
                      client=client) as path:
        assert path.name == "download"
        assert path.read_bytes() == PAYLOAD


def test_fetch_url_bad_checksum(server: str, tmp_path: Path) -> None:
    bad = "sha256:" + "0" * 64
    url = f"{server}/files/data.txt"
    with pytest.raises(ContextError) as info, fetch_url(url, tmp_path, AddOptions(host_network=True, checksum=bad)):
        pass
    msg = info.value.message
    assert url in msg and bad in msg and GOOD in msg
    assert list(tmp_path.iterdir()) == []


def test_fetch_url_malformed_checksum(server: str, tmp_path: Path) -> None:
    with pytest.raises(ContextError, match="invalid checksum"), \
            fetch_url(f"{server}/files/data.txt", tmp_path, AddOptions(host_network=True, checksum="md5:abc")):
        pass


def test_fetch_url_404(server: str, tmp_path: Path) -> None:
    url = f"{server}/files/missing.txt"
    with pytest.raises(ContextError, match="404") as info, \
            fetch_url(url, tmp_path, AddOptions(host_network=True)):
        pass
    assert url in info.value.message
    assert list(tmp_path.iterdir()) == []


def test_fetch_url_connection_refused(tmp_path: Path) -> None:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x"
    with pytest.raises(ContextError, match="failed to fetch") as info, \
            fetch_url(url, tmp_path, AddOptions(host_network=True)):
        pass
    assert url in info.value.message


# -- git ----------------------------------------------------------------------------


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert shutil.which("git"), "git is needed (the Makefile installs it)"
    r = tmp_path_factory.mktemp("repo")
    _git(r, "init", "-q", "-b", "main")
    (r / "README").write_text("v1\n")
    (r / "sub").mkdir()
    (r / "sub/inner.txt").write_text("inner v1\n")
    _git(r, "add", ".")
    _git(r, "commit", "-q", "-m", "one")
    _git(r, "tag", "v1")
    (r / "README").write_text("v2\n")
    _git(r, "commit", "-q", "-am", "two")
    return r


def test_fetch_git_head(repo: Path, tmp_path: Path) -> None:
    with fetch_git(f"file://{repo}", tmp_path, AddOptions(host_network=True)) as path:
        assert (path / "README").read_text() == "v2\n"
        assert not (path / ".git").exists()
    assert not path.exists()


def test_fetch_git_tag_and_subdir(repo: Path, tmp_path: Path) -> None:
    with fetch_git(f"file://{repo}#v1", tmp_path, AddOptions(host_network=True)) as path:
        assert (path / "README").read_text() == "v1\n"
    with fetch_git(f"file://{repo}#v1:sub", tmp_path, AddOptions(host_network=True)) as path:
        assert sorted(os.listdir(path)) == ["inner.txt"]
        assert (path / "inner.txt").read_text() == "inner v1\n"


def test_fetch_git_commit_and_checksum(repo: Path, tmp_path: Path) -> None:
    first = _git(repo, "rev-parse", "v1^{commit}")
    with fetch_git(f"file://{repo}#{first}", tmp_path, AddOptions(host_network=True, checksum=first)) as path:
        assert (path / "README").read_text() == "v1\n"
    with pytest.raises(ContextError, match="checksum mismatch"), \
            fetch_git(f"file://{repo}#main", tmp_path, AddOptions(host_network=True, checksum=first)):
        pass


def test_fetch_git_keep_git_dir(repo: Path, tmp_path: Path) -> None:
    with fetch_git(f"file://{repo}#v1", tmp_path, AddOptions(host_network=True, keep_git_dir=True)) as path:
        assert (path / ".git").is_dir()
        assert _git(path, "rev-parse", "HEAD") == _git(repo, "rev-parse", "v1^{commit}")
        assert _git(path, "tag") == "v1"


def test_fetch_git_query_form(repo: Path, tmp_path: Path) -> None:
    """``?ref=&subdir=`` (and tag=, checksum=, keep-git-dir) mean what the fragment means."""
    first = _git(repo, "rev-parse", "v1^{commit}")
    with fetch_git(f"file://{repo}?ref=v1&subdir=sub", tmp_path, AddOptions(host_network=True)) as path:
        assert sorted(os.listdir(path)) == ["inner.txt"]
    with fetch_git(f"file://{repo}?tag=v1&keep-git-dir", tmp_path, AddOptions(host_network=True)) as path:
        assert (path / "README").read_text() == "v1\n"
        assert _git(path, "tag") == "v1"
    with fetch_git(f"file://{repo}?tag=v1&checksum={first[:12]}", tmp_path,
                   AddOptions(host_network=True)) as path:
        assert (path / "README").read_text() == "v1\n"
    with pytest.raises(ContextError, match="checksum mismatch"), \
            fetch_git(f"file://{repo}?branch=main&checksum={first}", tmp_path, AddOptions(host_network=True)):
        pass
    with pytest.raises(ContextError, match="inconsistent keep-git-dir"), \
            fetch_git(f"file://{repo}?keep-git-dir=false", tmp_path,
                      AddOptions(host_network=True, keep_git_dir=True)):
        pass
    assert not (tmp_path / "checkout").exists()


def test_fetch_git_errors(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(ContextError, match="failed to fetch"), \
            fetch_git(f"file://{repo}#no-such-ref", tmp_path, AddOptions(host_network=True)):
        pass
    with pytest.raises(ContextError, match="subdirectory"), \
            fetch_git(f"file://{repo}#main:nope", tmp_path, AddOptions(host_network=True)):
        pass
    assert not (tmp_path / "checkout").exists()


# -- end to end ------------------------------------------------------------------------------


def test_add_build_end_to_end(distill: RunDistill, busybox_image: str, server: str,
                              tmp_path: Path) -> None:
    from tests.helpers.readback import umoci_unpack

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("inner/file.txt")
        info.size, info.uid, info.mode = 3, 42, 0o640
        tar.addfile(info, io.BytesIO(b"abc"))
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "local.tgz").write_bytes(gzip.compress(buf.getvalue()))
    (ctx / "plain.txt").write_text("plain")
    (ctx / "Dockerfile").write_text(f"""FROM {busybox_image}
ADD local.tgz /opt/
ADD --chown=7:8 plain.txt local.tgz /x/
ADD --checksum={GOOD} {server}/files/data.txt /data/
ADD {server}/files/data.txt /renamed.txt
""")
    out = tmp_path / "out"
    distill("build", "--progress", "plain", "--allow", "network.host",  # a local server
            "--output", f"type=oci,dest={out},tar=false",
            "-t", "add:latest", str(ctx))
    rootfs = umoci_unpack(out, "latest", tmp_path / "bundle")
    local = (rootfs / "opt/inner/file.txt").stat()
    assert (rootfs / "opt/inner/file.txt").read_text() == "abc"
    # (rootless, umoci --rootless gives every file to the user: owner() says so)
    assert (local.st_uid, stat.S_IMODE(local.st_mode)) == (owner(42, 0)[0], 0o640)  # archive's
    assert (rootfs / "x/plain.txt").stat().st_uid == owner(7, 0)[0]      # --chown: copied
    assert (rootfs / "x/inner/file.txt").stat().st_uid == owner(42, 0)[0]  # not: unpacked
    data = (rootfs / "data/data.txt").stat()
    assert (rootfs / "data/data.txt").read_bytes() == PAYLOAD
    assert (stat.S_IMODE(data.st_mode), int(data.st_mtime)) == (0o600, MTIME)
    assert (rootfs / "renamed.txt").read_bytes() == PAYLOAD


def test_an_added_archive_cannot_mark_a_directory_opaque(distill: RunDistill,
                                                         busybox_image: str,
                                                         tmp_path: Path) -> None:
    """An archive's ``trusted.overlay.*`` xattrs are overlayfs' own controls: ADD drops them
    as layer unpacking does (one policy, distill.sandbox.xattrs; the overlay ADD writes
    through refuses them too). Kept in the step's snapshot, the directory's opaque mark
    would hide the base's files from the steps after the ADD, while the image (whose tar
    never carries trusted.*) still holds them."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        d = tarfile.TarInfo("d")
        d.type, d.mode = tarfile.DIRTYPE, 0o755
        d.pax_headers = {"SCHILY.xattr.trusted.overlay.opaque": "y"}
        tar.addfile(d)
        new = tarfile.TarInfo("d/new")
        new.size = 4
        tar.addfile(new, io.BytesIO(b"new\n"))
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "marks.tar").write_bytes(buf.getvalue())
    (ctx / "Dockerfile").write_text(f"FROM {busybox_image}\n"
                                    "RUN mkdir /d && echo keep > /d/keep\n"
                                    "ADD marks.tar /\n"
                                    "RUN ls /d > /seen\n")
    out = tmp_path / "out"
    distill("build", "--output", f"type=local,dest={out}", str(ctx))
    assert (out / "seen").read_text().split() == ["keep", "new"]
    assert (out / "d/keep").read_text() == "keep\n"
