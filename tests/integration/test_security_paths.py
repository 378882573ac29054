"""Issue 8, findings 2-4: no host path is made from a string a Dockerfile, an image or a URL
controls, and no file of a rootfs or the context is opened by path on the host.

Each attack aims at a canary file outside the build (outside the context and the store):
after the build the canary holds what it held, and its secret never shows up in distill's
output or in the image. The build either fails with a clear error (no traceback) or
succeeds with the right result. Real builds through the CLI, real bubblewrap, a real HTTP
server on 127.0.0.1 (tests/helpers/httpserve.py).
"""

from __future__ import annotations

import functools
import io
import os
import socket
import stat
import subprocess
import tarfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import DISTILL, RunDistill
from tests.helpers.bases import GROUP, write_busybox_rootfs_tar
from tests.helpers.httpserve import serve_directory
from tests.helpers.rootless import ROOTLESS

pytestmark = pytest.mark.integration

SECRET = "canary-secret-5d1e0c"
CANARY_TEXT = f"root:x:0:0:{SECRET}:/{SECRET}:/bin/sh\napp:x:1000:1000::/{SECRET}:/bin/sh\n"


# -- helpers -----------------------------------------------------------------------------

def _canary(where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    path = where / "canary"
    path.write_text(CANARY_TEXT)
    os.chmod(path, 0o640)
    return path


def _files_under(root: Path) -> Iterator[Path]:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            yield Path(dirpath, name)


def _assert_untouched(canary: Path, proc: subprocess.CompletedProcess[str],
                      *outputs: Path) -> None:
    """The canary is still there, unchanged, and its secret appears in no output."""
    st = os.lstat(canary)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640
    assert canary.read_text() == CANARY_TEXT
    assert SECRET not in proc.stdout and SECRET not in proc.stderr
    for out in outputs:
        for path in _files_under(out):
            if path.is_file() and not path.is_symlink():
                assert SECRET.encode() not in path.read_bytes(), path


def _assert_clean_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


def _context(tmp_path: Path, dockerfile: str, files: dict[str, str] | None = None) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    for name, text in (files or {}).items():
        (ctx / name).parent.mkdir(parents=True, exist_ok=True)
        (ctx / name).write_text(text)
    return ctx


def _build(distill: RunDistill, ctx: Path, out: Path, *args: str,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return distill("build", "--progress", "plain", "--allow", "network.host",
                   "--output", f"type=local,dest={out}",
                   *args, str(ctx), check=False, env=env)


def _tmpdir_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """distill's temporary directories under tmp_path/t/tmp: a name joined to one of
    them that climbs with ``../../`` lands in tmp_path/t, where the canary waits.
    (RUNs under it use --network=none: the point is the heredoc, not the network.)"""
    tmp = tmp_path / "t" / "tmp"
    tmp.mkdir(parents=True)
    return {"TMPDIR": str(tmp)}, tmp_path / "t"


# -- finding 2: heredoc delimiters ---------------------------------------------------------

def test_run_heredoc_absolute_delimiter_is_refused(distill: RunDistill, busybox_image: str,
                                                   tmp_path: Path) -> None:
    canary = _canary(tmp_path / "host")
    ctx = _context(tmp_path, f"FROM {busybox_image}\nRUN <<{canary}\n#!/bin/sh\n"
                             f"echo pwned > /proof\n{canary}\n")
    proc = _build(distill, ctx, tmp_path / "out")
    _assert_clean_error(proc, "invalid heredoc name", str(ctx / "Dockerfile"))
    _assert_untouched(canary, proc)


def test_run_heredoc_climbing_delimiter_names_only_the_script(
        distill: RunDistill, busybox_image: str, tmp_path: Path) -> None:
    env, near = _tmpdir_env(tmp_path)
    canary = _canary(near)
    ctx = _context(tmp_path, f"FROM {busybox_image}\nRUN --network=none <<../../canary\n"
                             "#!/bin/sh\n"
                             "echo \"ran $0\" > /proof\n../../canary\n")
    out = tmp_path / "out"
    proc = _build(distill, ctx, out, env=env)
    assert proc.returncode == 0, proc.stderr
    assert (out / "proof").read_text() == "ran /run/distill-pipes/canary\n"
    assert not (out / "run/distill-pipes").exists()
    _assert_untouched(canary, proc, out)


def test_copy_heredoc_absolute_delimiter_is_refused(distill: RunDistill, busybox_image: str,
                                                    tmp_path: Path) -> None:
    canary = _canary(tmp_path / "host")
    ctx = _context(tmp_path, f"FROM {busybox_image}\nCOPY <<{canary} /dst/\npwned\n{canary}\n")
    proc = _build(distill, ctx, tmp_path / "out")
    _assert_clean_error(proc, "invalid heredoc name for COPY")
    _assert_untouched(canary, proc)


def test_copy_heredoc_climbing_delimiter_names_only_the_file(
        distill: RunDistill, busybox_image: str, tmp_path: Path) -> None:
    env, near = _tmpdir_env(tmp_path)
    canary = _canary(near)
    ctx = _context(tmp_path, f"FROM {busybox_image}\nCOPY <<../../canary /dst/\n"
                             "from the heredoc\n../../canary\n")
    out = tmp_path / "out"
    proc = _build(distill, ctx, out, env=env)
    assert proc.returncode == 0, proc.stderr
    assert (out / "dst/canary").read_text() == "from the heredoc\n"   # BuildKit's name too
    _assert_untouched(canary, proc, out)


@pytest.mark.parametrize("climbing", [True, False], ids=["climbing", "absolute"])
def test_onbuild_heredoc_of_a_base_image(distill: RunDistill, busybox_image: str,
                                         tmp_path: Path, climbing: bool) -> None:
    env, near = _tmpdir_env(tmp_path)
    canary = _canary(near if climbing else tmp_path / "host")
    name = "../../canary" if climbing else str(canary)
    tag = f"security-onbuild-heredoc:{'climb' if climbing else 'abs'}"
    base = tmp_path / "base"
    base.mkdir()
    (base / "Dockerfile").write_text(f"FROM {busybox_image}\n"
                                     f"ONBUILD RUN --network=none <<{name}\n#!/bin/sh\n"
                                     f"echo \"trigger $0\" > /proof\n{name}\n")
    made = distill("build", "-t", tag, str(base), check=False, env=env)
    assert made.returncode == 0, made.stderr
    ctx = _context(tmp_path, f"FROM {tag}\nRUN --network=none true\n")
    out = tmp_path / "out"
    proc = _build(distill, ctx, out, env=env)
    if climbing:
        assert proc.returncode == 0, proc.stderr
        assert (out / "proof").read_text() == "trigger /run/distill-pipes/canary\n"
    else:
        _assert_clean_error(proc, "invalid heredoc name", "ONBUILD")
    _assert_untouched(canary, proc, out)


# -- finding 3: ADD of a URL ---------------------------------------------------------------

@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    www = tmp_path / "www"
    www.mkdir()
    with serve_directory(www) as url:
        yield url, www


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_add_url_with_encoded_absolute_name(distill: RunDistill, busybox_image: str,
                                            served: tuple[str, Path], tmp_path: Path) -> None:
    url, www = served
    canary = _canary(tmp_path / "host")
    # the server's file at the path the URL decodes to: /<canary path>
    on_server = www / str(canary).lstrip("/")
    on_server.parent.mkdir(parents=True)
    on_server.write_text("from the server\n")
    ctx = _context(tmp_path, f"FROM {busybox_image}\n"
                             f"ADD {url}/{urllib.parse.quote(str(canary), safe='')} /dl/\n")
    out = tmp_path / "out"
    proc = _build(distill, ctx, out)
    assert proc.returncode == 0, proc.stderr
    assert (out / "dl/canary").read_text() == "from the server\n"   # Go's path.Base
    assert [p.name for p in (out / "dl").iterdir()] == ["canary"]
    _assert_untouched(canary, proc, out)


def test_add_url_with_encoded_absolute_name_and_no_server(
        distill: RunDistill, busybox_image: str, tmp_path: Path) -> None:
    canary = _canary(tmp_path / "host")
    ctx = _context(tmp_path, f"FROM {busybox_image}\n"
                             f"ADD {_dead_url()}/{urllib.parse.quote(str(canary), safe='')} /dl/\n")
    proc = _build(distill, ctx, tmp_path / "out")
    _assert_clean_error(proc, "failed to fetch", str(ctx / "Dockerfile"))
    _assert_untouched(canary, proc)          # the old code deleted it here


@pytest.mark.parametrize("tail", ["%2E%2E", "x/%2E%2E", "x/..", "a%2F..%2F%2E%2E%2F"])
@pytest.mark.parametrize("live", [True, False], ids=["server", "no-server"])
def test_add_url_naming_dot_dot_is_a_clear_error(distill: RunDistill, busybox_image: str,
                                                 served: tuple[str, Path], tmp_path: Path,
                                                 tail: str, live: bool) -> None:
    env, near = _tmpdir_env(tmp_path)
    canary = _canary(near)
    base = served[0] if live else _dead_url()
    ctx = _context(tmp_path, f"FROM {busybox_image}\nADD {base}/{tail} /dl/\n")
    proc = _build(distill, ctx, tmp_path / "out", env=env)
    _assert_clean_error(proc, "'..', names no file", str(ctx / "Dockerfile"))
    _assert_untouched(canary, proc)


def test_add_url_with_encoded_climb_keeps_the_last_name(
        distill: RunDistill, busybox_image: str, served: tuple[str, Path],
        tmp_path: Path) -> None:
    url, www = served
    env, near = _tmpdir_env(tmp_path)
    canary = _canary(near)
    (www / "canary").write_text("served\n")
    ctx = _context(tmp_path, f"FROM {busybox_image}\nADD {url}/x%2F..%2F..%2F..%2Fcanary /dl/\n")
    out = tmp_path / "out"
    proc = _build(distill, ctx, out, env=env)
    assert proc.returncode == 0, proc.stderr
    assert (out / "dl/canary").read_text() == "served\n"
    _assert_untouched(canary, proc, out)


# -- finding 4: the image's /etc/passwd and /etc/group -------------------------------------

def _base_with(tmp_path: Path, distill: RunDistill, name: str,
               replaced: dict[str, tuple[tarfile.TarInfo, bytes]]) -> str:
    """A busybox base (imported into the store) with some entries replaced."""
    plain = write_busybox_rootfs_tar(tmp_path / "plain.tar")
    hostile = tmp_path / f"{name}.tar"
    with tarfile.open(plain) as src, tarfile.open(hostile, "w", format=tarfile.PAX_FORMAT) as dst:
        for member in src:
            if member.name in replaced:
                info, data = replaced[member.name]
                dst.addfile(info, io.BytesIO(data) if info.isreg() else None)
            else:
                dst.addfile(member, src.extractfile(member) if member.isreg() else None)
    tag = f"security-passwd:{name}"
    distill("import", str(hostile), tag)
    return tag


def _entry(name: str, kind: bytes, *, link: str = "", major: int = 0,
           minor: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime, info.linkname = kind, 0o644, 0, link
    info.devmajor, info.devminor = major, minor
    return info


def _run_guarded(*args: str, store: Path) -> subprocess.CompletedProcess[str]:
    """The CLI with a guard against the old hang (a FIFO read forever): not a timing
    assertion, only a stop so a regression fails instead of blocking the suite."""
    env = {**os.environ, "DISTILL_ROOT": str(store)}
    return subprocess.run([DISTILL, *args], capture_output=True, text=True, env=env, check=False,
                          timeout=600)


@pytest.mark.parametrize("kind, what", [
    ((tarfile.FIFOTYPE, 0, 0), "a FIFO"),
    ((tarfile.CHRTYPE, 1, 5), "a character device"),     # /dev/zero: memory without end
    ((tarfile.BLKTYPE, 7, 0), "a block device"),         # /dev/loop0: a disk's bytes
], ids=["fifo", "dev-zero", "block-device"])
@pytest.mark.parametrize("table", ["passwd", "group"])
def test_special_passwd_or_group_is_a_clear_error(distill: RunDistill, store_root: Path,
                                                  tmp_path: Path, kind: tuple[bytes, int, int],
                                                  what: str, table: str) -> None:
    entry = _entry(f"etc/{table}", kind[0], major=kind[1], minor=kind[2])
    tag = _base_with(tmp_path, distill, f"{table}-{kind[0].decode()}",
                     {f"etc/{table}": (entry, b"")})
    # USER app:staff reads both tables (and $HOME from passwd)
    ctx = _context(tmp_path, f"FROM {tag}\nUSER app:staff\nRUN id > /id\n")
    proc = _run_guarded("build", "--output", f"type=local,dest={tmp_path / 'out'}", str(ctx),
                        store=store_root)
    if ROOTLESS and kind[0] != tarfile.FIFOTYPE:
        # a user namespace makes no device node: the table is not there at all
        _assert_clean_error(proc, "unable to find user app" if table == "passwd"
                            else "unable to find group staff")
        return
    _assert_clean_error(proc, f"/etc/{table} is not a regular file: it is {what}")


def test_passwd_symlink_to_a_host_file_is_not_followed(distill: RunDistill, tmp_path: Path,
                                                       ) -> None:
    canary = _canary(tmp_path / "host")
    tag = _base_with(tmp_path, distill, "symlink",
                     {"etc/passwd": (_entry("etc/passwd", tarfile.SYMTYPE, link=str(canary)),
                                     b"")})
    out = tmp_path / "out"
    # HOME for root: the canary says /<secret>; inside the image there is no passwd: /root
    ctx = _context(tmp_path, f"FROM {tag}\nRUN echo \"$HOME\" > /home.txt\n")
    proc = _build(distill, ctx, out)
    assert proc.returncode == 0, proc.stderr
    assert (out / "home.txt").read_text() == "/root\n"
    _assert_untouched(canary, proc, out)
    # a user only the canary knows is unknown
    (ctx / "Dockerfile").write_text(f"FROM {tag}\nUSER app\nRUN true\n")
    proc = _build(distill, ctx, tmp_path / "out2")
    _assert_clean_error(proc, "unable to find user app")
    _assert_untouched(canary, proc)


def test_oversized_passwd_is_a_clear_error(distill: RunDistill, tmp_path: Path) -> None:
    big = b"x" * (5 << 20)
    info = _entry("etc/passwd", tarfile.REGTYPE)
    info.size = len(big)
    tag = _base_with(tmp_path, distill, "big", {"etc/passwd": (info, big)})
    ctx = _context(tmp_path, f"FROM {tag}\nRUN true\n")
    proc = _build(distill, ctx, tmp_path / "out")
    _assert_clean_error(proc, "/etc/passwd is too large")


def test_group_file_still_resolves_normally(distill: RunDistill, busybox_image: str,
                                            tmp_path: Path) -> None:
    assert "staff:x:50:app" in GROUP
    ctx = _context(tmp_path, f"FROM {busybox_image}\nUSER app\nRUN id -G > /tmp/g && "
                             "echo \"$HOME\" >> /tmp/g\n")
    out = tmp_path / "out"
    proc = _build(distill, ctx, out)
    assert proc.returncode == 0, proc.stderr
    assert (out / "tmp/g").read_text() == "1000 50\n/home/app\n"


# -- finding 4: .dockerignore and Dockerfile in the context --------------------------------

@pytest.mark.parametrize("absolute", [True, False], ids=["absolute", "relative"])
def test_dockerignore_symlink_out_of_the_context_is_not_followed(
        distill: RunDistill, busybox_image: str, tmp_path: Path, absolute: bool) -> None:
    canary = tmp_path / "canary"
    canary.write_text(f"keep.txt\n# {SECRET}\n")          # would exclude keep.txt if read
    os.chmod(canary, 0o640)
    ctx = _context(tmp_path, f"FROM {busybox_image}\nCOPY . /ctx/\n", {"keep.txt": "kept\n"})
    (ctx / ".dockerignore").symlink_to(canary if absolute else Path("..", "canary"))
    out = tmp_path / "out"
    proc = _build(distill, ctx, out)
    assert proc.returncode == 0, proc.stderr
    assert (out / "ctx/keep.txt").read_text() == "kept\n"
    assert canary.read_text() == f"keep.txt\n# {SECRET}\n"
    assert SECRET not in proc.stdout + proc.stderr


def test_dockerignore_symlink_inside_the_context_is_followed(
        distill: RunDistill, busybox_image: str, tmp_path: Path) -> None:
    ctx = _context(tmp_path, f"FROM {busybox_image}\nCOPY . /ctx/\n",
                   {"keep.txt": "kept\n", "drop.txt": "dropped\n", "rules/ignore": "drop.txt\n"})
    (ctx / ".dockerignore").symlink_to("rules/ignore")
    out = tmp_path / "out"
    proc = _build(distill, ctx, out)
    assert proc.returncode == 0, proc.stderr
    assert (out / "ctx/keep.txt").exists() and not (out / "ctx/drop.txt").exists()


def test_dockerignore_fifo_is_a_clear_error(distill: RunDistill, busybox_image: str,
                                            store_root: Path, tmp_path: Path) -> None:
    ctx = _context(tmp_path, f"FROM {busybox_image}\nCOPY . /ctx/\n")
    os.mkfifo(ctx / ".dockerignore")
    proc = _run_guarded("build", str(ctx), store=store_root)
    _assert_clean_error(proc, ".dockerignore is not a regular file: it is a FIFO")


@pytest.mark.parametrize("absolute", [True, False], ids=["absolute", "relative"])
def test_dockerfile_symlink_out_of_the_context_is_not_followed(
        distill: RunDistill, busybox_image: str, tmp_path: Path, absolute: bool) -> None:
    canary = tmp_path / "canary"
    canary.write_text(f"FROM {busybox_image}\nRUN echo {SECRET}\n")
    os.chmod(canary, 0o640)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").symlink_to(canary if absolute else Path("..", "canary"))
    proc = distill("build", str(ctx), check=False)
    _assert_clean_error(proc, "Dockerfile not found", "followed only inside the context")
    assert canary.read_text() == f"FROM {busybox_image}\nRUN echo {SECRET}\n"
    assert SECRET not in proc.stdout + proc.stderr


def test_dockerfile_symlink_inside_the_context_is_followed(
        distill: RunDistill, busybox_image: str, tmp_path: Path) -> None:
    ctx = _context(tmp_path, "unused\n", {"docker/real": f"FROM {busybox_image}\n"
                                                         "RUN echo linked > /linked\n"})
    (ctx / "Dockerfile").unlink()
    (ctx / "Dockerfile").symlink_to("docker/real")
    out = tmp_path / "out"
    proc = _build(distill, ctx, out)
    assert proc.returncode == 0, proc.stderr
    assert (out / "linked").read_text() == "linked\n"


def test_dockerfile_fifo_is_a_clear_error(store_root: Path, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    os.mkfifo(ctx / "Dockerfile")
    proc = _run_guarded("build", str(ctx), store=store_root)
    _assert_clean_error(proc, "Dockerfile is not a regular file: it is a FIFO")


def test_explicit_dockerfile_outside_the_context_is_trusted(
        distill: RunDistill, busybox_image: str, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.Dockerfile"
    elsewhere.write_text(f"FROM {busybox_image}\nRUN echo chosen > /chosen\n")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    out = tmp_path / "out"
    proc = distill("build", "-f", str(elsewhere), "--output", f"type=local,dest={out}",
                   str(ctx), check=False)
    assert proc.returncode == 0, proc.stderr
    assert (out / "chosen").read_text() == "chosen\n"


# -- cache mount ids -----------------------------------------------------------------------

def test_cache_mount_ids_never_name_host_paths(distill: RunDistill, busybox_image: str,
                                               store_root: Path, tmp_path: Path) -> None:
    canary = _canary(tmp_path / "host")
    ids = [str(canary.parent), "../../../../../../../.." + str(canary.parent), "../host"]
    runs = "".join(f"RUN --mount=type=cache,id={cid},target=/c echo pwned > /c/pwned-{i}\n"
                   for i, cid in enumerate(ids))
    ctx = _context(tmp_path, f"FROM {busybox_image}\n{runs}")
    proc = _build(distill, ctx, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in canary.parent.iterdir()) == ["canary"]
    _assert_untouched(canary, proc, tmp_path / "out")
    names = [p.name for p in (store_root / "cache-mounts").iterdir()]
    assert all(len(n.split("-")[0].removesuffix(".lock")) == 64 or n.startswith(".")
               for n in names), names


def test_add_git_never_fetches_with_the_users_credentials(distill: RunDistill,
                                                         busybox_image: str,
                                                         tmp_path: Path) -> None:
    """A Dockerfile's ADD of a git URL must not send the credentials of whoever runs the
    build: not from ~/.gitconfig's credential helper, not from ~/.git-credentials."""
    import http.server
    import threading
    seen: list[str] = []

    class Refuse(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization") or "")
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="private"')
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    home = tmp_path / "home"
    home.mkdir()
    (home / ".git-credentials").write_text(
        f"http://victim:SUPER-SECRET-TOKEN@127.0.0.1:{port}\n")
    (home / ".gitconfig").write_text(
        f"[credential]\n\thelper = store --file={home / '.git-credentials'}\n")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f"FROM {busybox_image}\nADD http://127.0.0.1:{port}/private.git /r\n")
    try:
        proc = distill("build", "--allow", "network.host", str(ctx), check=False,
                       env={"HOME": str(home), "XDG_CONFIG_HOME": str(home)})
    finally:
        server.shutdown()
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert seen, "git asked the server"
    assert all("Basic" not in header for header in seen), seen
    assert "SUPER-SECRET-TOKEN" not in proc.stderr + proc.stdout


@pytest.mark.parametrize("source", ["http://127.0.0.1:{port}/files/data.txt",
                                    "http://localhost:{port}/files/data.txt",
                                    "http://[::ffff:127.0.0.1]:{port}/files/data.txt",
                                    "http://0.0.0.0:{port}/files/data.txt",
                                    "http://127.0.0.1:{port}/repo.git",
                                    "http://{host}:{port}/redirect"])
def test_add_cannot_reach_the_build_hosts_own_services(distill: RunDistill,
                                                       busybox_image: str, tmp_path: Path,
                                                       source: str) -> None:
    """A RUN cannot reach a service on the host's loopback; neither can ADD (which distill
    fetches itself), by name, address, redirect or git, unless --allow network.host."""
    import http.server
    import threading
    requests: list[str] = []

    class Local(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            self.send_response(302 if self.path == "/redirect" else 200)
            self.send_header("Location", f"http://127.0.0.1:{port}/files/data.txt")
            self.end_headers()
            self.wfile.write(b"LOCAL-ONLY-SECRET\n")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), Local)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    # The redirect comes from the host's outward address, a server ADD may use.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))
        host = probe.getsockname()[0]
    assert not host.startswith("127."), host
    url = source.format(port=port, host=host)
    (ctx / "Dockerfile").write_text(f"FROM {busybox_image}\nADD {url} /got\n")
    try:
        proc = distill("build", "--output", f"type=local,dest={tmp_path / 'out'}", str(ctx),
                       check=False)
        if "redirect" in url:  # the second hop is refused before anything is sent
            assert requests == ["/redirect"], requests
        else:
            assert requests == [], requests
        assert proc.returncode == 1, proc.stderr
        assert "this machine" in proc.stderr and "network.host" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert not (tmp_path / "out").exists()
        if "repo.git" not in url:
            allowed = distill("build", "--allow", "network.host", "--output",
                              f"type=local,dest={tmp_path / 'out'}", str(ctx))
            assert allowed.returncode == 0
            assert (tmp_path / "out/got").read_bytes() == b"LOCAL-ONLY-SECRET\n"
    finally:
        server.shutdown()


@pytest.mark.parametrize("url", ["http://[::1", "https://[zz]/x", "http://exa mple.com/x",
                                 "http://127.0.0.1:99999/x"])
def test_malformed_add_urls_are_clean_errors(distill: RunDistill, busybox_image: str,
                                             tmp_path: Path, url: str) -> None:
    (tmp_path / "Dockerfile").write_text(f"FROM {busybox_image}\nADD {url} /x\n")
    proc = distill("build", str(tmp_path), check=False)
    assert proc.returncode == 1, proc.stderr
    assert "Dockerfile:2" in proc.stderr and "Traceback" not in proc.stderr


def test_deep_trees_left_by_a_run(distill: RunDistill, busybox_tar: Path,
                                  tmp_path: Path) -> None:
    """A RUN may leave a tree deeper than Python's recursion limit (it is stored), or a
    path longer than the kernel's PATH_MAX (a clean error naming it, no traceback).

    The store is the test's own and is removed by `rm -rf` here: pytest's own cleanup of
    old temporary directories recurses and would crash on the deep snapshot."""
    root = tmp_path / "store"
    try:
        _build_deep_trees(functools.partial(distill, root=root), busybox_tar, tmp_path)
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=True)
        assert not root.exists()


def _build_deep_trees(distill: RunDistill, busybox_tar: Path, tmp_path: Path) -> None:
    distill("import", str(busybox_tar), "busybox:latest")
    busybox_image = "busybox:latest"
    deep = "i=0; while [ $i -lt 1300 ]; do mkdir a && cd a; i=$((i+1)); done"
    (tmp_path / "Dockerfile").write_text(f"FROM {busybox_image}\nRUN mkdir /d && cd /d && {deep}\n")
    distill("build", "--no-cache", str(tmp_path))
    name = "n" * 200
    long = f"i=0; while [ $i -lt 25 ]; do mkdir {name} && cd {name}; i=$((i+1)); done"
    (tmp_path / "Dockerfile").write_text(f"FROM {busybox_image}\nRUN mkdir /d && cd /d && {long}\n")
    proc = distill("build", "--no-cache", str(tmp_path), check=False)
    assert proc.returncode == 1, proc.stderr
    assert "too long to store" in proc.stderr and "Dockerfile:2" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_copy_parents_takes_no_metadata_from_above_the_context(
        distill: RunDistill, busybox_image: str, tmp_path: Path) -> None:
    """COPY --parents a/b/c/file with a/b -> / (the context's root): the directories made
    on the way get the metadata of what a, a/b and a/b/c name inside the context, never of
    the directories above it (once found by climbing from the resolved file)."""
    outer = tmp_path / "outer"
    ctx = outer / "ctx"
    (ctx / "a").mkdir(parents=True)
    (ctx / "c").mkdir()
    (ctx / "c" / "file").write_text("x\n")
    os.symlink("/", ctx / "a" / "b")
    os.chmod(ctx / "a", 0o750)
    os.chmod(ctx, 0o705)
    os.chmod(outer, 0o751)
    os.utime(outer, (981173106, 981173106))
    (ctx / "Dockerfile").write_text(f"FROM {busybox_image}\nCOPY --parents a/b/c/file /out/\n")
    out = tmp_path / "out"
    distill("build", "--output", f"type=local,dest={out}", str(ctx))
    assert (out / "out/a/b/c/file").read_text() == "x\n"
    assert stat.S_IMODE((out / "out/a").stat().st_mode) == 0o750
    assert stat.S_IMODE((out / "out/a/b").stat().st_mode) == 0o705   # the context's root
    assert (out / "out/a").stat().st_mtime != 981173106


@pytest.mark.parametrize("host", ["127.0.0.1", "[::ffff:127.0.0.1]", "2130706433", "localhost"])
def test_add_does_not_even_connect_to_the_loopback(distill: RunDistill, busybox_image: str,
                                                   tmp_path: Path, host: str) -> None:
    """Refused before connecting: no handshake reaches a loopback port, so a Dockerfile
    cannot tell open ports from closed ones by ADD's errors (review round 4, F1)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    open_port = listener.getsockname()[1]
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        closed_port = closed.getsockname()[1]
    try:
        errors = []
        for port in (open_port, closed_port):
            (tmp_path / "Dockerfile").write_text(
                f"FROM {busybox_image}\nADD http://{host}:{port}/x /x\n")
            proc = distill("build", str(tmp_path), check=False)
            assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
            errors.append(proc.stderr.replace(str(port), "PORT"))
        assert "this machine" in errors[0] and errors[0] == errors[1]
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()
