"""ADD of a git repository cannot reach the build host's loopback, by any road.

git runs jailed in a private network (as a RUN step does) unless --allow network.host,
so neither a name git resolves itself (``*.localhost``), nor a redirect, nor a submodule,
nor an scp-like remote whose host a name check would misread leads it to a service on
the host's 127.0.0.1. Each case is built twice: refused without the entitlement (a clear
error naming the Dockerfile line, nothing asked of the local server), then, with it, the
same Dockerfile does reach the local server: proof that the test can see an escape.

Real servers: git's dumb HTTP protocol from a small Python server, ``git daemon`` for the
git protocol (which submodules' shallow fetches need), a bare TCP listener standing in
for sshd on 127.0.0.1:22. The "outside" server, which the jail may reach, listens on a
documentation address (198.51.100.0/24) added to the host for the module: inside a
private network the host's eth0 address is the jail's own (pasta copies it), so no
existing address of the host would do.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import RunDistill
from tests.helpers.gitserve import GIT_ENV as _GIT_ENV
from tests.helpers.gitserve import bare_repo as _bare_repo
from tests.helpers.gitserve import git as _git
from tests.helpers.gitserve import http_server as _http

pytestmark = pytest.mark.integration

SECRET = "LOOPBACK-ONLY-5c0ffee"
def _free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


@contextmanager
def _git_daemon(address: str, directory: Path) -> Iterator[str]:
    """``git daemon`` serving ``directory`` on ``address``; yields its git:// base URL."""
    port = _free_port(address)
    daemon = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", f"--listen={address}", f"--port={port}",
         f"--base-path={directory}", str(directory)],
        env=_GIT_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((address, port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "git daemon did not start"
                time.sleep(0.05)
        yield f"git://{address}:{port}"
    finally:
        daemon.terminate()
        daemon.wait()


@pytest.fixture(scope="module")
def outside() -> Iterator[str]:
    """A host address other than the loopback and eth0's, which the jail may reach."""
    address = "198.51.100.73"
    subprocess.run(["ip", "address", "add", f"{address}/32", "dev", "lo"],
                   check=True, capture_output=True)
    try:
        yield address
    finally:
        subprocess.run(["ip", "address", "del", f"{address}/32", "dev", "lo"],
                       check=False, capture_output=True)


@pytest.fixture()
def served(tmp_path: Path) -> Path:
    """Bare repositories: ``repo.git`` (the loopback's secret), ``sub.git``."""
    directory = tmp_path / "served"
    directory.mkdir()
    _bare_repo(directory, "repo.git", {"secret.txt": SECRET + "\n"})
    _bare_repo(directory, "sub.git", {"sub.txt": "sub\n"})
    return directory


def _build(distill: RunDistill, tmp_path: Path, image: str, source: str,
           *allow: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(f"FROM {image}\nADD {source} /got/\n")
    out = Path(tempfile.mkdtemp(dir=tmp_path)) / "out"
    proc = distill("build", *allow, "--output", f"type=local,dest={out}", str(ctx),
                   check=False)
    return proc, out


def _assert_refused(proc: subprocess.CompletedProcess[str], out: Path) -> None:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Dockerfile:2" in proc.stderr, proc.stderr
    assert "failed to fetch" in proc.stderr, proc.stderr
    assert "network.host" in proc.stderr, proc.stderr      # the hint says what would allow it
    assert not out.exists()
    assert SECRET not in proc.stdout + proc.stderr


def _assert_fetched(proc: subprocess.CompletedProcess[str], out: Path, rel: str,
                    text: str) -> None:
    assert proc.returncode == 0, proc.stderr
    assert (out / "got" / rel).read_text() == text


# -- what the jail may reach ---------------------------------------------------------------

def test_git_add_reaches_an_outside_server_from_its_private_network(
        distill: RunDistill, busybox_image: str, tmp_path: Path, served: Path,
        outside: str) -> None:
    """Without --allow network.host, git still fetches from servers the private network
    reaches (pasta relays them): over HTTP and the git protocol, with a submodule."""
    with _git_daemon(outside, served) as daemon:
        _bare_repo(served, "super.git", {"top.txt": "top\n"}, submodule=f"{daemon}/sub.git")
        with _http(outside, served) as (base, _):
            proc, out = _build(distill, tmp_path, busybox_image, f"{base}/super.git")
            _assert_fetched(proc, out, "top.txt", "top\n")
            assert (out / "got/sub/sub.txt").read_text() == "sub\n"
            assert not (out / "got/.git").exists()
        proc, out = _build(distill, tmp_path, busybox_image, f"{daemon}/repo.git#main")
        _assert_fetched(proc, out, "secret.txt", SECRET + "\n")


def test_git_add_from_the_loopback_with_network_host(distill: RunDistill, busybox_image: str,
                                                     tmp_path: Path, served: Path) -> None:
    """--allow network.host: git shares the host's network, and its loopback."""
    with _http("127.0.0.1", served) as (base, asked):
        proc, out = _build(distill, tmp_path, busybox_image, f"{base}/repo.git",
                           "--allow", "network.host")
    _assert_fetched(proc, out, "secret.txt", SECRET + "\n")
    assert asked


def test_jailed_checkout_is_given_back_to_distill(served: Path) -> None:
    """git works in its checkout as the jail's unprivileged uid; distill gets it back
    whole (owned by distill, so even git run by distill accepts a kept .git), and a
    branch's name is kept as BuildKit keeps it (``ls-remote`` in the jail)."""
    from distill.builder.add import AddOptions, fetch_git

    dest_dir = Path(tempfile.mkdtemp(prefix="distill-add-test"))
    try:
        with _http("127.0.0.1", served) as (base, _), \
                fetch_git(f"{base}/repo.git#main", dest_dir,
                          AddOptions(host_network=True, keep_git_dir=True)) as path:
            owners = {os.lstat(p).st_uid for p in [path, *path.rglob("*")]}
            assert owners == {os.getuid()}, owners
            assert (path / "secret.txt").read_text() == SECRET + "\n"
            assert _git(path, "branch", "--list", "main") == "main"
    finally:
        shutil.rmtree(dest_dir)


# -- a) to d): the roads to the host's loopback ----------------------------------------------

def test_git_add_of_a_localhost_subdomain_is_refused(distill: RunDistill, busybox_image: str,
                                                     tmp_path: Path, served: Path) -> None:
    """curl resolves ``*.localhost`` to 127.0.0.1 by itself (the host's resolver may
    not know the name at all)."""
    with _http("127.0.0.1", served) as (base, asked):
        url = base.replace("127.0.0.1", "repo.localhost") + "/repo.git"
        proc, out = _build(distill, tmp_path, busybox_image, url)
        _assert_refused(proc, out)
        assert asked == []
        proc, out = _build(distill, tmp_path, busybox_image, url, "--allow", "network.host")
        _assert_fetched(proc, out, "secret.txt", SECRET + "\n")


def test_git_add_redirected_to_the_loopback_is_refused(distill: RunDistill,
                                                       busybox_image: str, tmp_path: Path,
                                                       served: Path, outside: str) -> None:
    """An outside server (which ADD may use) redirects git to the host's 127.0.0.1."""
    with _http("127.0.0.1", served) as (local, asked), \
            _http(outside, served, redirect=local) as (base, redirected):
        proc, out = _build(distill, tmp_path, busybox_image, f"{base}/moved.git")
        _assert_refused(proc, out)
        assert redirected and all(p.startswith("/moved.git/") for p in redirected)
        assert asked == []
        proc, out = _build(distill, tmp_path, busybox_image, f"{base}/moved.git",
                           "--allow", "network.host")
        _assert_fetched(proc, out, "secret.txt", SECRET + "\n")
        assert asked


def test_git_add_submodule_on_the_loopback_is_refused(distill: RunDistill, busybox_image: str,
                                                      tmp_path: Path, served: Path,
                                                      outside: str) -> None:
    """An outside repository whose submodule lives on the host's 127.0.0.1."""
    with _git_daemon("127.0.0.1", served) as local:
        _bare_repo(served, "super.git", {"top.txt": "top\n"}, submodule=f"{local}/sub.git")
        with _http(outside, served) as (base, asked):
            proc, out = _build(distill, tmp_path, busybox_image, f"{base}/super.git")
            _assert_refused(proc, out)
            assert any(p.startswith("/super.git/") for p in asked)   # the top was fetched
            proc, out = _build(distill, tmp_path, busybox_image, f"{base}/super.git",
                               "--allow", "network.host")
            _assert_fetched(proc, out, "sub/sub.txt", "sub\n")


def test_git_add_scp_like_remote_with_two_ats_is_refused(distill: RunDistill,
                                                         busybox_image: str,
                                                         tmp_path: Path) -> None:
    """``user@evil@127.0.0.1:repo``: ssh takes the host after the last ``@``. A bare TCP
    listener on 127.0.0.1:22 stands in for sshd and counts who connects."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", 22))
    except OSError as exc:
        listener.close()
        if exc.errno == errno.EADDRINUSE:
            pytest.skip("127.0.0.1:22 is taken: no way to see whether ssh connects")
        raise
    listener.listen(8)
    connections: list[object] = []

    def accept() -> None:
        while True:
            try:
                conn, peer = listener.accept()
            except OSError:
                return
            connections.append(peer)
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    try:
        source = "user@evil@127.0.0.1:repo.git"
        proc, out = _build(distill, tmp_path, busybox_image, source)
        _assert_refused(proc, out)
        assert connections == []
        proc, out = _build(distill, tmp_path, busybox_image, source,
                           "--allow", "network.host")
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert connections, "with the host's network, ssh reaches 127.0.0.1:22"
    finally:
        listener.close()


# -- host repositories by path ---------------------------------------------------------------

def test_git_add_cannot_read_a_host_repository(distill: RunDistill, busybox_image: str,
                                               tmp_path: Path, served: Path) -> None:
    """Neither ``ADD file:///host/repo`` (no git source: a path in the context) nor a
    submodule naming a host repository by path or file:// copies it into the image,
    even with --allow network.host (an entitlement to the network, not to host files)."""
    host_repo = served / "repo.git"          # world-readable, holds SECRET
    proc, out = _build(distill, tmp_path, busybox_image, f"file://{host_repo}",
                       "--allow", "network.host")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "Dockerfile:2" in proc.stderr and not out.exists()
    for url in (str(host_repo), f"file://{host_repo}"):
        name = f"super-{len(url)}.git"
        _bare_repo(served, name, {"top.txt": "top\n"}, submodule=url, sub="repo.git")
        with _http("127.0.0.1", served) as (base, _):
            proc, out = _build(distill, tmp_path, busybox_image, f"{base}/{name}",
                               "--allow", "network.host")
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert "Dockerfile:2" in proc.stderr and not out.exists()
        assert SECRET not in proc.stdout + proc.stderr
