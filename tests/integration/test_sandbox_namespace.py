"""ensure_private_mount_namespace, exercised in child processes (needs root).

It changes the whole process, so it is never called in the pytest process:
each test runs a small Python program and looks at it from outside.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

MOUNT_AND_WAIT = """
import os, sys
from pathlib import Path
from distill.sandbox import ensure_private_mount_namespace, overlay_mount
ensure_private_mount_namespace()
first = os.readlink("/proc/self/ns/mnt")
ensure_private_mount_namespace()  # idempotent: no second namespace
assert os.readlink("/proc/self/ns/mnt") == first
print(first, flush=True)
with overlay_mount([], Path(sys.argv[1])) as mnt:
    (mnt.merged / "made-inside").write_text("x")
    print("mounted", flush=True)
    sys.stdin.readline()
"""


def own_mounts() -> str:
    return Path("/proc/self/mountinfo").read_text()


def test_mounts_stay_private_and_vanish_when_killed(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    child = subprocess.Popen(
        [sys.executable, "-c", MOUNT_AND_WAIT, str(scratch)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        child_ns = child.stdout.readline().strip()
        assert child.stdout.readline().strip() == "mounted"
        assert child_ns != os.readlink("/proc/self/ns/mnt")
        # The overlay exists only in the child's namespace.
        assert str(scratch / "merged") in Path(f"/proc/{child.pid}/mountinfo").read_text()
        assert str(scratch) not in own_mounts()
        assert list((scratch / "merged").iterdir()) == []
        child.send_signal(signal.SIGKILL)  # no cleanup code runs
        assert child.wait() == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert str(scratch) not in own_mounts()
    assert (scratch / "upper/made-inside").read_text() == "x"  # the diff survives on disk


def test_refuses_once_threads_exist() -> None:
    program = """
import threading
from distill.errors import SandboxError
from distill.sandbox import ensure_private_mount_namespace
stop = threading.Event()
threading.Thread(target=stop.wait).start()
try:
    ensure_private_mount_namespace()
except SandboxError as exc:
    print("refused:", exc.message)
finally:
    stop.set()
"""
    out = subprocess.run(
        [sys.executable, "-c", program], check=True, capture_output=True, text=True
    ).stdout
    assert out.startswith("refused:") and "threads" in out


def test_already_private_namespace_is_kept() -> None:
    program = """
import os
from distill.sandbox import ensure_private_mount_namespace
before = os.readlink("/proc/self/ns/mnt")
ensure_private_mount_namespace()
print(before == os.readlink("/proc/self/ns/mnt"))
"""
    out = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", program],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert out.strip() == "True"


def test_a_run_works_where_distill_is_in_a_pid_namespace_of_its_own(
        busybox_image: str, store_root: Path, tmp_path: Path) -> None:
    """As in a container: distill in a PID namespace whose /proc has no pid 2. bubblewrap
    (the first process of a namespace of its own) numbers its child 2 and reads
    /proc/2/ns; with the outer /proc every RUN failed ("open /proc/2/ns/ns failed"),
    and on a host it read the kernel's kthreadd. It now gets a /proc of its own."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {busybox_image}\nRUN busybox echo ran-$((40+2))\n")
    distill = str(Path(sys.executable).with_name("distill"))
    proc = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", distill, "build", "--no-cache",
         "--progress", "plain", str(ctx)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "DISTILL_ROOT": str(store_root)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ran-42" in proc.stderr
