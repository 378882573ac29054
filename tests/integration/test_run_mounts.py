"""RUN --mount end to end: prepare_mounts + run_in_rootfs over an overlay of a busybox rootfs.

Needs root, overlayfs, bwrap and /bin/busybox (Debian busybox-static). Every test
checks that what was written under a mount never reaches the overlay's upper dir.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import pytest

from distill.builder.contenthash import ContentHashes
from distill.builder.context import BuildContext
from distill.builder.runmounts import (
    RunMounts,
    cache_key,
    mounts_inputs,
    mounts_record,
    prepare_mounts,
)
from distill.builder.secrets import SecretStore
from distill.dockerfile.mounts import Mount, parse_mount
from distill.errors import ContextError, DockerfileError, SandboxError
from distill.sandbox import RunSpec, overlay_mount, run_in_rootfs
from distill.sandbox.run import SandboxMount, sandbox_ids
from distill.store.store import Store
from tests.helpers.bases import install_busybox

pytestmark = pytest.mark.integration

PATH = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


@pytest.fixture
def work() -> Iterator[Path]:
    """A 0711 directory with ``rootfs/`` (busybox), ``context/`` and ``store/``."""
    base = Path(tempfile.mkdtemp(prefix="distill-mounts-"))
    os.chmod(base, 0o711)
    rootfs = base / "rootfs"
    install_busybox(rootfs)
    (rootfs / "tmp").mkdir(mode=0o1777)
    os.chmod(rootfs / "tmp", 0o1777)
    context = base / "context"
    (context / "src").mkdir(parents=True)
    (context / "src/main.txt").write_text("from the context\n")
    (context / "src/secret.key").write_text("ignored\n")
    (context / ".dockerignore").write_text("**/*.key\n")
    (base / "store").mkdir()
    try:
        yield base
    finally:
        shutil.rmtree(base)


class Env:
    def __init__(self, work: Path, secrets: SecretStore | None = None,
                 ssh: dict[str, str] | None = None, ignore: bool = False) -> None:
        self.work = work
        self.store = Store(work / "store")
        root = work / "context"
        self.context = BuildContext.load(root, None) if ignore else BuildContext(root.resolve())
        self.secrets = secrets or SecretStore()
        self.ssh = ssh or {}
        self.stages: dict[str, Path] = {}
        self.runs = 0

    def stage_rootfs(self, name: str, sandbox: bool = False) -> AbstractContextManager[Path]:
        return nullcontext(self.stages[name])

    def prepare(self, *values: str, workdir: str = "/") -> AbstractContextManager[RunMounts]:
        mounts = [parse_mount(v, lambda w: w) for v in values]
        return prepare_mounts(mounts, store=self.store, context=self.context,
                              stage_rootfs=self.stage_rootfs, secrets=self.secrets,
                              ssh=self.ssh, workdir=workdir)

    def run(self, script: str, *mounts: str, network: str = "default", uid: int = 0,
            gid: int = 0, cwd: str = "/") -> tuple[int, str, list[str]]:
        """Run ``script`` with ``mounts`` over a fresh overlay; (code, output, upper entries)."""
        self.runs += 1
        scratch = self.work / f"scratch{self.runs}"
        scratch.mkdir()
        out = io.BytesIO()
        with self.prepare(*mounts) as prepared, \
                overlay_mount([self.work / "rootfs"], scratch, sandbox=sandbox_ids()) as mnt:
            spec = RunSpec(argv=["/bin/sh", "-c", script], env=prepared.environ(PATH),
                           mounts=tuple(prepared), secret_env=prepared.secret_env,
                           network=network, uid=uid, gid=gid, cwd=cwd)
            code = run_in_rootfs(mnt.merged, spec, stdout=out, idmapped=True)
        upper = sorted(str(p.relative_to(mnt.upper)) for p in mnt.upper.rglob("*"))
        return code, out.getvalue().decode(), upper


def test_cache_mount_persists_between_runs_and_stays_out_of_the_layer(work: Path) -> None:
    env = Env(work)
    code, out, upper = env.run("echo one >> /cache/log; cat /cache/log",
                               "type=cache,target=/cache")
    assert (code, out, upper) == (0, "one\n", [])
    code, out, upper = env.run("echo two >> /cache/log; cat /cache/log",
                               "type=cache,target=/cache")
    assert (code, out, upper) == (0, "one\ntwo\n", [])
    key = cache_key(parse_mount("type=cache,target=/cache", str))
    assert (env.store.root / "cache-mounts" / key / "log").read_text() == "one\ntwo\n"
    # another id is another cache
    code, out, _ = env.run("ls /cache", "type=cache,target=/cache,id=other")
    assert (code, out) == (0, "")


def test_cache_mount_mode_and_owner_let_a_user_write(work: Path) -> None:
    env = Env(work)
    code, out, upper = env.run("id -u; stat -c '%a %u:%g' /c; touch /c/mine && echo ok",
                               "type=cache,target=/c,uid=1000,gid=1000,mode=0750",
                               uid=1000, gid=1000)
    assert (code, out.split("\n")[:3], upper) == (0, ["1000", "750 1000:1000", "ok"], [])
    # root's default cache directory is not writable by a user (BuildKit's default too)
    code, out, _ = env.run("touch /d/x", "type=cache,target=/d", uid=1000, gid=1000)
    assert code != 0


def test_mounts_reach_a_user_whose_rootfs_path_is_closed(work: Path, tmp_path: Path) -> None:
    env = Env(work)
    closed = tmp_path / "closed"  # 0700: uid 1000 cannot pass, so the rootfs is re-bound
    closed.mkdir(mode=0o700)
    (closed / "scratch").mkdir()
    with env.prepare("type=cache,target=/c,uid=1000", "type=tmpfs,target=/t") as prepared, \
            overlay_mount([work / "rootfs"], closed / "scratch", sandbox=sandbox_ids()) as mnt:
        out = io.BytesIO()
        spec = RunSpec(argv=["/bin/sh", "-c", "touch /c/u /t/u && ls /c /t"], env=dict(PATH),
                       mounts=tuple(prepared), uid=1000, gid=1000)
        assert run_in_rootfs(mnt.merged, spec, stdout=out, idmapped=True) == 0, out.getvalue()
        assert out.getvalue().decode().split() == ["/c:", "u", "/t:", "u"]
    assert list(mnt.upper.iterdir()) == []
    mounts = Path("/proc/self/mountinfo").read_text()
    assert "distill-run-" not in mounts and str(mnt.merged) not in mounts


def test_cache_sharing(work: Path) -> None:
    env = Env(work)
    with env.prepare("type=cache,target=/c,sharing=shared") as a, \
            env.prepare("type=cache,target=/c,sharing=shared") as b:
        assert a[0].source == b[0].source
        with env.prepare("type=cache,target=/c,sharing=private") as c:
            assert c[0].source != a[0].source
            assert c[0].source is not None and c[0].source.name.endswith("-1")
    with env.prepare("type=cache,target=/c,sharing=private") as d:
        assert d[0].source == a[0].source  # free again: the first instance is reused

    order: list[str] = []
    with env.prepare("type=cache,target=/c,sharing=locked"):
        def second() -> None:
            with env.prepare("type=cache,target=/c,sharing=locked"):
                order.append("second")
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.3)
        order.append("first done")
    thread.join(5)
    assert order == ["first done", "second"]


def test_two_mounts_of_one_locked_cache_in_a_run_do_not_deadlock(work: Path) -> None:
    env = Env(work)
    code, out, _ = env.run("echo x > /a/f; cat /b/f", "type=cache,id=c,target=/a,sharing=locked",
                           "type=cache,id=c,target=/b,sharing=locked")
    assert (code, out) == (0, "x\n")


def test_cache_from_a_stage_is_seeded_once(work: Path) -> None:
    env = Env(work)
    stage = work / "stage"
    (stage / "deps/sub").mkdir(parents=True)
    (stage / "deps/sub/lib.a").write_text("archive\n")
    env.stages["builder"] = stage
    code, out, upper = env.run("cat /c/sub/lib.a; echo new > /c/new",
                               "type=cache,target=/c,from=builder,source=deps")
    assert (code, out, upper) == (0, "archive\n", [])
    code, out, _ = env.run("ls /c", "type=cache,target=/c,from=builder,source=deps")
    assert out.split() == ["new", "sub"]
    assert not (stage / "deps/new").exists()


def test_secret_file_is_readable_and_never_in_the_layer(work: Path) -> None:
    value = work / "token"
    value.write_text("s3cr3t-value")
    env = Env(work, SecretStore.parse([f"id=token,src={value}"]))
    code, out, upper = env.run(
        "cat /run/secrets/token; echo; stat -c '%a %u' /run/secrets/token; "
        "echo x > /run/secrets/token || echo read-only",
        "type=secret,id=token")
    assert code == 0, out
    assert out.splitlines()[:2] == ["s3cr3t-value", "400 0"]
    assert "read-only" in out
    assert upper == []  # neither the file nor the /run/secrets stub reached the layer


def test_secret_options_target_and_env(work: Path) -> None:
    env = Env(work, SecretStore.parse(["id=api"], environ={"api": "k3y"}))
    code, out, upper = env.run(
        'echo "[$API]"; cat /etc/api.conf; echo; stat -c "%a %u:%g" /etc/api.conf',
        "type=secret,id=api,env=API,target=/etc/api.conf,mode=0440,uid=1000,gid=1000")
    assert (code, out.splitlines(), upper) == (0, ["[k3y]", "k3y", "440 1000:1000"], [])


def test_secret_env_is_on_no_command_line(work: Path) -> None:
    env = Env(work, SecretStore.parse(["id=tok"], environ={"tok": "never-in-argv-4711"}))
    seen: list[str] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for pid in os.listdir("/proc"):
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if b"never-in-argv-4711" in cmdline:
                    seen.append(pid)
    thread = threading.Thread(target=watch)
    thread.start()
    try:
        code, out, _ = env.run('sleep 0.5; echo "$T"', "type=secret,id=tok,env=T")
    finally:
        done.set()
        thread.join()
    assert (code, out, seen) == (0, "never-in-argv-4711\n", [])


def test_missing_secrets(work: Path) -> None:
    env = Env(work)
    code, out, _ = env.run("ls /run/secrets/absent || echo none; echo \"[$V]\"",
                           "type=secret,id=absent", "type=secret,id=v,env=V")
    assert code == 0
    assert out.splitlines() == ["ls: /run/secrets/absent: No such file or directory",
                                "none", "[]"]
    with pytest.raises(DockerfileError, match="secret absent: not found"):
        env.run("true", "type=secret,id=absent,required")


def test_tmpfs_writes_vanish(work: Path) -> None:
    env = Env(work)
    code, out, upper = env.run("echo x > /scratch/f; cat /scratch/f; stat -c %a /scratch",
                               "type=tmpfs,target=/scratch,size=1m")
    assert (code, out, upper) == (0, "x\n1777\n", [])
    code, out, _ = env.run("ls -A /scratch", "type=tmpfs,target=/scratch")
    assert (code, out) == (0, "")
    code, out, _ = env.run("head -c 2000000 /dev/zero > /s/big", "type=tmpfs,target=/s,size=1m")
    assert code != 0  # the size limit holds


def test_bind_from_the_context_is_read_only(work: Path) -> None:
    env = Env(work)
    code, out, upper = env.run("cat /mnt/main.txt; touch /mnt/new || echo refused",
                               "type=bind,source=src,target=/mnt")
    assert code == 0
    assert out.splitlines()[0] == "from the context"
    assert out.splitlines()[-1] == "refused"
    assert upper == []
    # relative target: under the working directory
    with env.prepare("source=src/main.txt,target=m.txt", workdir="/app") as prepared:
        assert prepared[0].target == "/app/m.txt" and prepared[0].readonly


def test_bind_respects_dockerignore_and_rw_writes_are_thrown_away(work: Path) -> None:
    env = Env(work, ignore=True)
    code, out, upper = env.run("ls /mnt/src; echo changed > /mnt/src/main.txt && echo wrote",
                               "type=bind,target=/mnt,rw")
    assert code == 0, out
    assert out.split() == ["main.txt", "wrote"]
    assert upper == []
    assert (work / "context/src/main.txt").read_text() == "from the context\n"
    with pytest.raises(ContextError, match="not found in the build context"):
        env.run("true", "type=bind,source=src/secret.key,target=/k")
    with pytest.raises(ContextError, match="not found"):
        env.run("true", "type=bind,source=nope,target=/k")


def test_bind_from_a_stage(work: Path) -> None:
    env = Env(work)
    stage = work / "stage"
    (stage / "out").mkdir(parents=True)
    (stage / "out/app").write_text("binary\n")
    env.stages["build"] = stage
    code, out, upper = env.run("cat /app", "type=bind,from=build,source=out/app,target=/app")
    assert (code, out, upper) == (0, "binary\n", [])


def test_existing_mount_point_stays_and_nested_mounts_work(work: Path) -> None:
    env = Env(work)
    (work / "rootfs/var/cache").mkdir(parents=True)
    code, out, upper = env.run(
        "echo a > /var/cache/x; echo b > /var/cache/t/y; ls /var/cache",
        "type=cache,target=/var/cache/t", "type=tmpfs,target=/var/cache")
    assert (code, out.split(), upper) == (0, ["t", "x"], [])
    assert (work / "rootfs/var/cache").is_dir()


def test_network_none_has_only_loopback(work: Path) -> None:
    env = Env(work)
    code, out, _ = env.run("cat /proc/net/dev", network="none")
    assert code == 0
    names = {line.split(":")[0].strip() for line in out.splitlines() if ":" in line}
    assert names == {"lo"}


@pytest.fixture
def agent(work: Path) -> Iterator[Path]:
    """A fake ssh agent: answers every request with 'pong:' + the request."""
    path = work / "agent.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(b"pong:" + conn.recv(100))
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path
    stop.set()
    thread.join()
    server.close()


def test_ssh_socket_is_visible(work: Path, agent: Path) -> None:
    env = Env(work, ssh={"default": str(agent)})
    code, out, upper = env.run(
        'echo "$SSH_AUTH_SOCK"; test -S "$SSH_AUTH_SOCK" && echo socket; '
        'stat -c "%a %u" "$SSH_AUTH_SOCK"', "type=ssh")
    assert (code, out.splitlines(), upper) == (
        0, ["/run/buildkit/ssh_agent.0", "socket", "600 0"], [])
    # the relay really reaches the agent
    with env.prepare("type=ssh,target=/s,mode=0666") as prepared:
        assert prepared.environ({})["SSH_AUTH_SOCK"] == "/s"
        source = prepared[0].source
        assert source is not None and stat.S_IMODE(os.stat(source).st_mode) == 0o666
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(source))
            client.sendall(b"ping")
            assert client.recv(100) == b"pong:ping"


def test_missing_ssh_agent(work: Path) -> None:
    env = Env(work)
    code, out, _ = env.run('echo "$SSH_AUTH_SOCK"; ls /run/buildkit || echo none', "type=ssh")
    assert code == 0
    assert out.splitlines()[0] == "/run/buildkit/ssh_agent.0"
    assert out.splitlines()[-1] == "none"
    with pytest.raises(DockerfileError, match='no SSH key "default"'):
        env.run("true", "type=ssh,required=true")


def test_bad_sandbox_mounts_are_refused(work: Path) -> None:
    env = Env(work)
    (work / "rootfs/file").write_text("x")
    with pytest.raises(SandboxError, match="cannot mount"):
        env.run("true", "type=tmpfs,target=/file")
    code, out, upper = env.run("cat /file")
    assert (code, out, upper) == (0, "x", [])


def test_relative_target_under_workdir_and_mount_points_removed(work: Path) -> None:
    env = Env(work)
    with env.prepare("type=tmpfs,target=t", workdir="/w/x") as prepared:
        assert prepared[0].target == "/w/x/t"
    with pytest.raises(DockerfileError, match='invalid mount target "/"'), \
            env.prepare("type=tmpfs,target="):
        pass


def test_cache_key_ignores_nothing_that_matters() -> None:
    a = cache_key(Mount(type="cache", target="/c", id="/c", sharing="shared", readonly=False))
    assert a == cache_key(parse_mount("type=cache,target=/c", str))
    assert a == cache_key(parse_mount("type=cache,target=/x,id=/c", str))
    assert a != cache_key(parse_mount("type=cache,target=/c,uid=1", str))


def test_signature_follows_context_content_but_never_secret_values(work: Path) -> None:
    env = Env(work, SecretStore.parse(["id=tok"], environ={"tok": "value-xyz"}))
    hashes = ContentHashes()   # one stat cache for the build: a changed file is re-read

    def mounts_signature(mounts: list[Mount], context: BuildContext,
                         workdir: str = "/") -> list[object]:
        return [mounts_record(mounts, workdir), mounts_inputs(mounts, context, hashes)]

    mounts = [parse_mount(v, same) for v in (
        "source=src,target=/s", "type=secret,id=tok,env=T", "type=cache,target=/c,mode=0")]
    before = mounts_signature(mounts, env.context, "/")
    assert "value-xyz" not in repr(before)
    assert before == mounts_signature(mounts, env.context, "/")
    assert before == mounts_signature(mounts, env.context, "/w")  # absolute targets
    rel = [parse_mount("type=tmpfs,target=t", same)]
    assert mounts_signature(rel, env.context, "/a") != mounts_signature(rel, env.context, "/b")
    assert mounts_signature(mounts[2:], env.context) != mounts_signature(
        [parse_mount("type=cache,target=/c", same)], env.context)
    (work / "context/src/main.txt").write_text("changed\n")
    assert before != mounts_signature(mounts, env.context, "/")


def same(word: str) -> str:
    return word


def test_working_directory_may_be_a_cache_mount_but_not_inside_one(work: Path) -> None:
    """Other RUNs change a cache as they please: a path through it could be swapped for
    /proc/self/fd/N before bubblewrap changes into it (tests/integration/
    test_isolation_race.py). The mount's own root cannot be renamed: it may be the cwd."""
    env = Env(work)
    code, out, _ = env.run("pwd; mkdir -p sub", "type=cache,target=/cache,id=cwd",
                           cwd="/cache")
    assert (code, out) == (0, "/cache\n")
    with pytest.raises(SandboxError, match="inside the cache mount /cache"):
        env.run("pwd", "type=cache,target=/cache,id=cwd", cwd="/cache/sub")
    code, out, _ = env.run("cd /; pwd", "type=tmpfs,target=/t", cwd="/t")  # private: fine
    assert (code, out) == (0, "/\n")


def test_no_mount_inside_a_cache_mount(work: Path) -> None:
    """A mount point inside a shared cache could be swapped for a symlink out of the
    rootfs by a concurrent RUN between its check and the mount (or its removal)."""
    env = Env(work)
    with pytest.raises(SandboxError, match="inside the cache mount /cache"):
        env.run("true", "type=cache,target=/cache,id=nest", "type=tmpfs,target=/cache/t")
    code, _, _ = env.run("test -d /t/cache", "type=tmpfs,target=/t",
                         "type=cache,target=/t/cache,id=nest")  # a cache in a private mount
    assert code == 0


def _host_canary() -> Path:
    """A world-readable canary directory outside every build (mode 0755, under /tmp)."""
    canary = Path(tempfile.mkdtemp(prefix="distill-mount-canary-", dir="/tmp"))
    os.chmod(canary, 0o755)
    (canary / "secret").write_text("CANARY-SECRET\n")
    return canary


def test_cache_source_is_opened_inside_the_cache(work: Path) -> None:
    """A cache's source= is opened by descriptor inside the cache: a symlink another RUN
    put (or swapped) on the way leads nowhere outside it (attack: swap x/tmp for a link
    to /tmp between the check and the mount, and mount the host's /tmp idmapped)."""
    canary = _host_canary()
    try:
        cache = work / "cache"
        cache.mkdir()
        (cache / "x").symlink_to("/")  # as a racing RUN leaves it at the wrong moment
        mount = SandboxMount("bind", "/m", cache, shared=True,
                             source_path=f"x/{canary.relative_to('/')}")
        out = io.BytesIO()
        spec = RunSpec(argv=["/bin/sh", "-c", "cat /m/secret"], env=dict(PATH),
                       mounts=(mount,), network="none")
        (work / "s1").mkdir()
        with overlay_mount([work / "rootfs"], work / "s1", sandbox=sandbox_ids()) as mnt, \
                pytest.raises(SandboxError, match="does not exist"):
            run_in_rootfs(mnt.merged, spec, stdout=out, idmapped=True)
        assert b"CANARY" not in out.getvalue()
        assert (canary / "secret").read_text() == "CANARY-SECRET\n"
    finally:
        shutil.rmtree(canary)


def test_a_mount_through_a_link_in_a_cache_never_reaches_the_host(work: Path) -> None:
    """A nested mount point is resolved before any shared content is in place: a link in
    the cache to the host's /tmp cannot carry it out of the rootfs."""
    canary = _host_canary()
    try:
        cache = work / "cache"
        (cache / "a").mkdir(parents=True)
        (cache / "a" / "x").symlink_to("/tmp")
        mounts = (SandboxMount("bind", "/c", cache, shared=True),
                  SandboxMount("tmpfs", f"/c/a/x/{canary.name}"))
        spec = RunSpec(argv=["true"], env=dict(PATH), mounts=mounts, network="none")
        (work / "s2").mkdir()
        with overlay_mount([work / "rootfs"], work / "s2", sandbox=sandbox_ids()) as mnt, \
                pytest.raises(SandboxError, match="inside the cache mount"):
            run_in_rootfs(mnt.merged, spec, idmapped=True)
        assert str(canary) not in Path("/proc/self/mountinfo").read_text()
        assert sorted(p.name for p in canary.iterdir()) == ["secret"]
    finally:
        shutil.rmtree(canary)
