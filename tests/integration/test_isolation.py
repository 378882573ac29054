"""Issue 8: a RUN step cannot reach the host. Escape tests for the isolation itself, the
regression tests of finding 6 (RUN on the host's network) and, in part, of finding 7
(``RUN mknod`` of a disk); finding 1 (the working directory) is test_isolation_workdir.py.

Every test attempts one escape from a RUN of a real build (the CLI, real bubblewrap, real
pasta) and asserts that it fails; its name and docstring name the mechanism that stops it:

- **user namespace**: container root is host uid 2^31, which owns nothing on the host,
  and holds Docker's capabilities only inside its own namespace: none over the host
  (devices, mounts, kernel modules, host processes);
- **PID namespace**: host processes are invisible (no ``/proc/PID``, no ptrace target);
- **network namespace**: the host's loopback services, abstract unix sockets and
  interfaces belong to another namespace; pasta (``--no-map-gw``) forwards no port and
  maps no address to the host's loopback;
- **seccomp**: mount, the new mount API, unshare and namespace clones, kernel modules,
  kexec and handle-based opens are refused (the tests assert failure, not an errno);
- **no_new_privs**, checked from the host on a running RUN;
- **nodev mounts**: a device node an image carries opens no host device;
- **mount namespace and pivot_root**: the host's root is not in the sandbox at all.

What busybox lacks is attempted by a static C probe (tests/helpers/isolation.py).
"""

from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import tarfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Self

import pytest

from tests.conftest import DISTILL, RunDistill
from tests.helpers.httpserve import serve_directory
from tests.helpers.isolation import (
    SECRET,
    answer,
    assert_secret_nowhere,
    assert_untouched,
    build,
    built,
    canary_file,
    compile_probe,
    context,
    refused,
)
from tests.helpers.progress import without_prefixes
from tests.helpers.rootless import ROOTLESS, host_id, needs_root, run_has_own_proc

pytestmark = pytest.mark.integration



@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_probe(tmp_path_factory.mktemp("probe"))


@pytest.fixture
def canary() -> Iterator[Path]:
    with canary_file() as path:
        yield path


@pytest.fixture
def host_sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A host process whose environment holds the secret."""
    proc = subprocess.Popen(["sleep", "600"],
                            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                 "DISTILL_CANARY": SECRET})
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


# -- finding 6: the network ---------------------------------------------------------------

def _default_gateway() -> str | None:
    """The host's IPv4 default gateway: the address pasta would map to the host's loopback
    without --no-map-gw."""
    for line in Path("/proc/net/route").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) > 2 and fields[1] == "00000000" and fields[2] != "00000000":
            return socket.inet_ntoa(struct.pack("<I", int(fields[2], 16)))
    return None


def _listeners() -> list[tuple[str, socket.socket]]:
    """Listening TCP sockets on the host's 127.0.0.1 and ::1 that never accept: a
    connection that reached one waits in its backlog."""
    found = []
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.bind((host, 0))
        except OSError:          # no IPv6 loopback on this host
            s.close()
            continue
        s.listen(16)
        s.setblocking(False)
        found.append((f"[{host}]" if family == socket.AF_INET6 else host, s))
    return found


def _nothing_connected(s: socket.socket) -> bool:
    try:
        conn, _peer = s.accept()
    except BlockingIOError:
        return True
    conn.close()
    return False


def test_network_namespace_host_loopback_is_unreachable(distill: RunDistill,
                                                        busybox_image: str, probe: Path,
                                                        tmp_path: Path) -> None:
    """Finding 6: an HTTP server and a TCP listener on the host's 127.0.0.1 (and ::1) are
    out of reach, by name, by address and through the gateway: the RUN has a network
    namespace of its own (its 127.0.0.1 is its own), and pasta forwards no port and maps no
    address to the host's loopback (--no-map-gw)."""
    www = tmp_path / "www"
    www.mkdir()
    (www / "secret.txt").write_text(f"{SECRET}\n")
    listeners = _listeners()
    try:
        with serve_directory(www) as url:
            port = int(url.rsplit(":", 1)[1])
            hosts = ["127.0.0.1", "localhost", "[::1]"]
            gateway = _default_gateway()
            if gateway is not None:
                hosts.append(gateway)
            attempts = [(f"http {h}", f"timeout 5 wget -q -O- http://{h}:{port}/secret.txt")
                        for h in hosts]
            attempts += [(f"tcp {h}:{s.getsockname()[1]}",
                          f"echo hello | timeout 5 nc {h.strip('[]')} {s.getsockname()[1]}")
                         for h, s in listeners]
            script = "".join(f"if {cmd}; then echo '{what}: ok'; "
                             f"else echo '{what}: unreachable'; fi\n"
                             for what, cmd in attempts)
            ctx = context(tmp_path, probe, "RUN <<EOF\n" + script + "EOF\n")
            out = tmp_path / "out"
            proc = build(distill, ctx, out=out)
            output = built(proc)
            # the server was there all along, for the host
            with urllib.request.urlopen(f"{url}/secret.txt", timeout=30) as response:
                assert SECRET in response.read().decode()
        refused(output, *(what for what, _cmd in attempts))
        assert_secret_nowhere(output, out)
        for host, s in listeners:
            assert _nothing_connected(s), f"a connection from the RUN reached {host}"
    finally:
        for _host, s in listeners:
            s.close()


def test_network_namespace_abstract_unix_socket_is_unreachable(
        distill: RunDistill, busybox_image: str, probe: Path, tmp_path: Path) -> None:
    """Finding 6: abstract unix sockets belong to a network namespace; the RUN's is not the
    host's, so a socket the host listens on cannot be connected to."""
    name = f"distill-isolation-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind("\0" + name)
        server.listen(4)
        server.setblocking(False)
        ctx = context(tmp_path, probe, f"RUN /probe unix {name}\n")
        output = built(build(distill, ctx))
        refused(output, "unix connect")
        assert _nothing_connected(server)
        # the probe does reach it from the host's namespace
        host = subprocess.run([str(probe), "unix", name],
                              capture_output=True, text=True, check=True)
        assert answer(host.stdout, "unix connect").startswith("ok")
        assert not _nothing_connected(server)


class _Traffic:
    """UDP datagrams carrying a marker, sent on the host's loopback until stopped."""

    def __init__(self, marker: str) -> None:
        self.payload = f"GET /{marker} HTTP/1.1\r\nX-Token: {marker}\r\n\r\n".encode()
        self.sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sink.bind(("127.0.0.1", 0))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._send, daemon=True)

    def _send(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            while not self.stop.wait(0.002):
                s.sendto(self.payload, self.sink.getsockname())

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.sink.close()


@needs_root  # the control sniffs the host's loopback (CAP_NET_RAW)
def test_network_namespace_packet_socket_sees_no_host_traffic(
        distill: RunDistill, busybox_image: str, probe: Path, tmp_path: Path) -> None:
    """Finding 6: an AF_PACKET socket (CAP_NET_RAW inside the user namespace) sees only
    the RUN's own network namespace: host traffic on the host's loopback, which the same
    probe sees from the host, never reaches it."""
    marker = f"sniff-{uuid.uuid4().hex}"
    ctx = context(tmp_path, probe, f"RUN /probe packet {marker} 3; "
                                    "echo \"netns: $(readlink /proc/self/ns/net)\"\n")
    with _Traffic(marker):
        output = built(build(distill, ctx))
        on_host = subprocess.run([str(probe), "packet", marker, "1"],
                                 capture_output=True, text=True, check=True).stdout
    counts = re.fullmatch(r"(\d+), with the marker: (\d+)", answer(output, "packets"))
    assert counts is not None and counts.group(2) == "0", output
    assert answer(output, "interfaces").split() == ["lo", "eth0"]   # pasta's tap, no more
    assert answer(output, "netns") != os.readlink("/proc/self/ns/net")
    # the control: on the host, the probe does see the marker
    host_counts = re.fullmatch(r"(\d+), with the marker: (\d+)", answer(on_host, "packets"))
    assert host_counts is not None and int(host_counts.group(2)) > 0, on_host


def test_network_none_has_only_loopback(distill: RunDistill, busybox_image: str,
                                        probe: Path, tmp_path: Path) -> None:
    """--network=none: a network namespace with only lo, and no pasta."""
    ctx = context(tmp_path, probe, "RUN --network=none /probe packet nothing 0.2; "
                                    "wget -q -O- http://192.0.2.1/ || echo 'http: failed'\n")
    output = built(build(distill, ctx))
    assert answer(output, "interfaces").split() == ["lo"]
    assert answer(output, "packets") == "0, with the marker: 0"
    assert answer(output, "http") == "failed"


# -- the PID namespace ---------------------------------------------------------------------

def test_pid_namespace_host_environ_is_unreadable(distill: RunDistill, busybox_image: str,
                                                  probe: Path, tmp_path: Path,
                                                  host_sleeper: subprocess.Popen[bytes]
                                                  ) -> None:
    """/proc/1/environ is the RUN's own PID namespace's init, and a host process's
    /proc/PID does not exist in the RUN's /proc: host processes are invisible. Where a
    container forbids a /proc of the RUN's own (rootless in a pod: the RUN binds the
    container's), they are listed, and their environment is still unreadable."""
    pid = host_sleeper.pid
    # the control: once `sleep` has exec'd (just after the fork its environ can still
    # read empty: a CI run met that)
    deadline = time.monotonic() + 10
    while SECRET.encode() not in Path(f"/proc/{pid}/environ").read_bytes():
        assert time.monotonic() < deadline, "the host process never showed its environ"
        time.sleep(0.05)
    ctx = context(tmp_path, probe, f"""\
RUN ps -o pid,args | sed 's/^/ps: /'; cat /proc/1/environ; \\
    cat /proc/{pid}/environ || echo 'host environ: unreadable'; \\
    for f in /proc/[0-9]*/environ; do cat "$f"; echo; done; \\
    grep -l -s DISTILL_CANARY /proc/*/environ || echo 'search: nothing'
""")
    out = tmp_path / "out"
    proc = build(distill, ctx, out=out)
    output = built(proc)
    sandbox_pids = {int(line.split()[1]) for line in output.splitlines()
                    if re.match(r"ps: +\d", line)}
    if run_has_own_proc():
        assert sandbox_pids and max(sandbox_pids) < 100, output  # a PID namespace of its own
        assert pid not in sandbox_pids
    else:
        assert pid in sandbox_pids, output          # the container's /proc, listed
    assert answer(output, "host environ") == "unreadable"
    assert answer(output, "search") == "nothing"
    assert_secret_nowhere(output, out)


def _status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def test_ptrace_of_a_host_process_fails(distill: RunDistill, busybox_image: str, probe: Path,
                                        tmp_path: Path,
                                        host_sleeper: subprocess.Popen[bytes]) -> None:
    """PTRACE_ATTACH/SEIZE and kill() of a host process: the PID namespace hides it, and
    the user namespace holds no CAP_SYS_PTRACE or CAP_KILL over host processes."""
    pid = host_sleeper.pid
    ctx = context(tmp_path, probe, f"RUN /probe ptrace {pid}\n")
    output = built(build(distill, ctx))
    refused(output, "ptrace attach", "ptrace seize", "kill 0")
    status = _status(pid)
    assert status["TracerPid"] == "0" and status["State"].startswith("S"), status
    assert host_sleeper.poll() is None


# -- the user namespace, as the host sees it -------------------------------------------------

def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.decode(errors="replace").split("\0")[:-1]


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _wait_for(what: str, find: Callable[[], int | None], proc: subprocess.Popen[str]) -> int:
    """Poll the host's processes until ``find()`` returns a pid; the build must not end."""
    deadline = time.monotonic() + 120
    while True:
        found = find()
        if found is not None:
            return found
        if proc.poll() is not None:
            raise AssertionError(f"the build ended before {what} was seen: "
                                 f"{proc.communicate()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} never showed up on the host")
        time.sleep(0.02)


@pytest.mark.parametrize(("user", "uid", "gid"), [("root", 0, 0), ("app", 1000, 1000)])
def test_user_namespace_run_has_unprivileged_host_ids(busybox_image: str, store_root: Path,
                                                      probe: Path, tmp_path: Path,
                                                      user: str, uid: int, gid: int) -> None:
    """While a RUN sleeps, its processes seen from the host: host uid and gid 2^31 + the
    container's (never 0), every supplementary group in that range, no_new_privs and a
    seccomp filter set, and user, PID and network namespaces other than the host's; pasta,
    its network helper, runs as container root's host uid too."""
    token = uuid.uuid4().hex
    script = f"sleep 1000; echo woke-{token}"
    ctx = context(tmp_path, probe, f"USER {user}\nRUN {script}\n")
    env = {**os.environ, "DISTILL_ROOT": str(store_root)}
    proc = subprocess.Popen([DISTILL, "build", "--progress", "plain", str(ctx)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    sleeper = None
    try:
        shell = _wait_for("the RUN's shell", lambda: next(
            (p for p in _pids() if _cmdline(p) == ["/bin/sh", "-c", script]), None), proc)
        sleeper = _wait_for("the RUN's sleep", lambda: next(
            (p for p in _pids() if _cmdline(p) == ["sleep", "1000"]
             and _status(p).get("PPid") == str(shell)), None), proc)
        for pid in (shell, sleeper):
            status = _status(pid)
            assert status["Uid"].split() == [str(host_id(uid))] * 4, status
            assert status["Gid"].split() == [str(host_id(gid, "gid"))] * 4, status
            lowest = host_id(0, "gid") if ROOTLESS else host_id(0)  # rootless: the user's
            assert all(int(g) >= lowest for g in status["Groups"].split()), status
            assert (status["Uid"].split()[0] != "0"), status
            assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2", status
            for ns in ("user", "pid", "net"):
                assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}")
        net = os.readlink(f"/proc/{shell}/ns/net")
        helpers = [p for p in _pids() if (c := _cmdline(p)) and c[0].endswith("pasta")
                   and "--netns" in c and _same_netns(c[c.index("--netns") + 1], net)]
        assert helpers, "no pasta serves the RUN's network namespace"
        for pid in helpers:
            assert _status(pid)["Uid"].split() == [str(host_id(uid))] * 4
    finally:
        if sleeper is not None:
            os.kill(sleeper, signal.SIGKILL)   # the RUN goes on and the build ends
        else:
            proc.kill()
        stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stdout + stderr
    assert f"woke-{token}\n" in stderr.replace(f"echo woke-{token}", "")


def _same_netns(path: str, net: str) -> bool:
    try:
        return os.readlink(path) == net
    except OSError:
        return False


# -- mount, modules, handles, chroot: user namespace, seccomp, pivot_root --------------------

def test_mount_fails_user_namespace_and_seccomp(distill: RunDistill, busybox_image: str,
                                                probe: Path, tmp_path: Path) -> None:
    """mount(2) of tmpfs, proc and binds, remounts, umount, the new mount API, and a new
    user namespace to gain CAP_SYS_ADMIN first (also through the x32 and i386 system call
    entries): the user namespace holds no CAP_SYS_ADMIN, and seccomp refuses them all."""
    ctx = context(tmp_path, probe, "RUN /probe mount; "
                                    "mount -t tmpfs none /mnt; echo \"busybox mount: $?\"; "
                                    "unshare -U -r -m true; echo \"busybox unshare: $?\"\n")
    output = built(build(distill, ctx))
    refused(output, "mount tmpfs", "mount proc", "mount bind", "mount remount /",
             "umount /proc", "fsopen", "open_tree", "mount from a new user namespace",
             "x32 unshare", "i386 unshare", "unshare user+mount")
    assert answer(output, "busybox mount") != "0"
    assert answer(output, "busybox unshare") != "0"


def test_kernel_module_and_kexec_fail_user_namespace_and_seccomp(
        distill: RunDistill, busybox_image: str, probe: Path, tmp_path: Path) -> None:
    """init_module, finit_module, delete_module, kexec_load, kexec_file_load: no
    CAP_SYS_MODULE or CAP_SYS_BOOT over the host (user namespace), and seccomp refuses
    them."""
    ctx = context(tmp_path, probe, "RUN /probe module; insmod /probe; "
                                    "echo \"busybox insmod: $?\"\n")
    output = built(build(distill, ctx))
    refused(output, "init_module", "finit_module", "delete_module", "kexec_load",
             "kexec_file_load")
    assert answer(output, "busybox insmod") != "0"


def test_open_by_handle_fails_user_namespace_and_seccomp(
        distill: RunDistill, busybox_image: str, probe: Path, tmp_path: Path) -> None:
    """The "shocker" escape: open_by_handle_at with a handle to the host file system's
    root inode needs CAP_DAC_READ_SEARCH over the host, and seccomp refuses it."""
    ctx = context(tmp_path, probe, "RUN /probe handle /etc/passwd\n")
    refused(built(build(distill, ctx)), "name_to_handle_at", "open_by_handle_at")


def test_chroot_breakout_stays_in_the_sandbox(distill: RunDistill, busybox_image: str,
                                              probe: Path, canary: Path,
                                              tmp_path: Path) -> None:
    """The classic chroot breakout (chroot into a subdirectory, climb out with .., chroot
    there) works with CAP_SYS_CHROOT, and lands on the sandbox's own root: bubblewrap
    pivots into the rootfs in a mount namespace of its own, so the host's root is not
    there to climb to."""
    ctx = context(tmp_path, probe, f"RUN /probe chroot {canary}\n")
    out = tmp_path / "out"
    proc = build(distill, ctx, out=out)
    refused(built(proc), "target open")
    assert_untouched(canary, proc, out)


# -- devices: user namespace, nodev --------------------------------------------------------

def _host_disk() -> tuple[int, int]:
    """Major and minor of a real block device of this host (its first partition entry)."""
    for line in Path("/proc/partitions").read_text().splitlines()[2:]:
        fields = line.split()
        if len(fields) == 4:
            return int(fields[0]), int(fields[1])
    raise AssertionError("this host lists no block device in /proc/partitions")


def test_run_mknod_of_a_disk_fails(distill: RunDistill, busybox_image: str, probe: Path,
                                   tmp_path: Path) -> None:
    """Finding 7: `RUN mknod /dev/sdz b 8 0` fails: CAP_MKNOD inside a user namespace does
    not cover device nodes (that takes CAP_MKNOD over the host). The build stops with the
    RUN's error."""
    ctx = context(tmp_path, probe, "RUN mknod /dev/sdz b 8 0\n")
    proc = build(distill, ctx, out=tmp_path / "out")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "mknod: /dev/sdz:" in proc.stderr
    assert "did not complete successfully" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_mknod_and_open_of_the_host_disk_fails_user_namespace(
        distill: RunDistill, busybox_image: str, probe: Path, tmp_path: Path) -> None:
    """mknod of this host's disk (block) and of /dev/mem (char), in the overlay and in
    /dev, then opening it: no CAP_MKNOD over the host, so there is no node to open."""
    major, minor = _host_disk()
    ctx = context(tmp_path, probe, f"RUN /probe mknod /tmp/disk {major} {minor}; "
                                    f"/probe mknod /dev/disk {major} {minor}; "
                                    "mknod /tmp/mem c 1 1; echo \"busybox mknod: $?\"\n")
    output = built(build(distill, ctx))
    refused(output, "/tmp/disk mknod", "/tmp/disk open", "/dev/disk mknod", "/dev/disk open")
    assert answer(output, "busybox mknod") != "0"


@pytest.fixture(scope="module")
def device_image(distill: RunDistill, busybox_tar: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> str:
    """busybox plus device nodes for this host's disk and /dev/mem, 0666: what a hostile
    base image can carry (distill unpacks layers as root, so the nodes are real)."""
    tar_path = tmp_path_factory.mktemp("devices") / "devices.tar"
    shutil.copy(busybox_tar, tar_path)
    major, minor = _host_disk()
    with tarfile.open(tar_path, "a") as tar:
        for name, kind, dev in (("disk", tarfile.BLKTYPE, (major, minor)),
                                ("mem", tarfile.CHRTYPE, (1, 1))):
            info = tarfile.TarInfo(name)
            info.type, info.mode = kind, 0o666
            info.devmajor, info.devminor = dev
            tar.addfile(info, io.BytesIO(b""))
    tag = "isolation-devices:latest"
    distill("import", str(tar_path), tag)
    return tag


def test_device_node_of_an_image_opens_no_host_device_nodev(
        distill: RunDistill, device_image: str, probe: Path, tmp_path: Path) -> None:
    """A block device node of the host's disk and a /dev/mem node in the base image, 0666
    and owned by container root: the rootfs overlay is mounted nodev, so opening them
    fails; the same through a RUN --mount=type=bind of that image, read-write. Rootless,
    a user namespace may not make device nodes: unpacking skips them (as moby does)."""
    ctx = context(tmp_path, probe, f"""\
RUN ls -ln /disk /mem; /probe open /disk; /probe open /mem
RUN --mount=type=bind,from={device_image},source=/,target=/m,rw /probe open /m/disk; \\
    /probe open /m/mem
""", base=device_image)
    output = built(build(distill, ctx))
    if ROOTLESS:
        assert "ls: /disk: No such file or directory" in output, output
    else:
        assert re.search(r"^b[rw-]{9} .* /disk$", output, re.MULTILINE), output  # it is there
    refused(output, "/disk open", "/mem open", "/m/disk open", "/m/mem open")


def test_run_has_hosts_of_its_own(distill: RunDistill, busybox_image: str,
                                  tmp_path: Path) -> None:
    """/etc/hosts names the loopback and the sandbox's hostname (so it resolves, as under
    BuildKit) and tells nothing of the host's; a non-root user can read it."""
    (tmp_path / "Dockerfile").write_text(
        f"FROM {busybox_image}\n"
        "RUN echo \"hostname=$(hostname)\"; ping -c1 -W1 \"$(hostname)\" | head -1\n"
        "USER 1000\nRUN cat /etc/hosts\n")
    proc = distill("build", "--progress", "plain", "--no-cache", str(tmp_path))
    out = proc.stdout + proc.stderr
    assert "hostname=distill" in out
    assert "127.0.0.1\tlocalhost distill" in out
    assert "::1\tlocalhost ip6-localhost ip6-loopback" in out
    assert "PING distill (127.0.0.1)" in out
    for line in Path("/etc/hosts").read_text().splitlines():
        if line.strip() and not line.startswith("#") and "localhost" not in line:
            assert line.split()[-1] not in out, f"host's {line!r} shows in the RUN"


def test_run_has_no_terminal_and_no_process_group_of_distills(
        busybox_image: str, store_root: Path, tmp_path: Path) -> None:
    """Found by the rootless review: a RUN stayed in distill's session. With the user's
    terminal as its controlling terminal, it could push keystrokes into the user's shell
    (TIOCSTI) or read what the user typed; sharing distill's process group, a rootless RUN
    (whose root is the user's uid) could signal distill and its caller. distill runs here
    on a pseudo-terminal (util-linux script)."""
    (tmp_path / "Dockerfile").write_text(
        f"FROM {busybox_image}\n"
        "RUN (exec 3<>/dev/tty && echo tty-opened) 2>/dev/null || echo tty-refused; "
        "trap '' USR1; kill -USR1 0; echo own-group-signalled\n")
    command = shlex.join([DISTILL, "build", "--progress", "plain", "--no-cache",
                          str(tmp_path)])
    proc = subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True,
                          text=True, timeout=300, env={**os.environ,
                                                       "DISTILL_ROOT": str(store_root)},
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr   # distill was not signalled
    # the RUN's own lines, without their step prefixes (the RUN's title shows too)
    said = [line.strip() for line in without_prefixes(proc.stdout).splitlines()]
    assert "tty-refused" in said and "tty-opened" not in said, proc.stdout
    assert "own-group-signalled" in said
