"""``--progress tty`` under a real pseudo-terminal: the running step is redrawn in place
with its timer and its last lines of output, and the build ends with the same summary as
``--progress plain``; ``auto`` picks it on a terminal and the plain log elsewhere."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest

from tests.conftest import DISTILL, RunDistill
from tests.helpers.progress import parse_plain

pytestmark = pytest.mark.integration

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
_TIME = re.compile(r"\s+(\d+\.\ds|cached)\s*$")


def _under_pty(argv: list[str], env: dict[str, str], timeout: float = 300) -> tuple[int, str]:
    """Run ``argv`` with a terminal (120x40) as stdin, stdout and stderr; its exit code
    and everything it wrote."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                            start_new_session=True)
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:       # EIO: the terminal's last writer is gone
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    code = proc.wait(timeout=30)
    return code, out.decode("utf-8", "replace")


def _summary(text: str) -> list[str]:
    """The size summary's lines, from its header to the verdict, without the time column
    (times differ from build to build)."""
    lines = [_ANSI.sub("", line).rstrip() for line in text.replace("\r", "").split("\n")]
    start = next(i for i, line in enumerate(lines) if line.startswith("stage / step"))
    end = next(i for i, line in enumerate(lines) if line.startswith("final image:"))
    return [_TIME.sub("", line) for line in lines[start:end + 1]]


def _context(tmp_path: Path, busybox_image: str) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f"FROM {busybox_image} AS work\n"
        "RUN for i in 1 2 3 4 5 6; do echo line $i; sleep 0.4; done\n"
        "FROM scratch\nCOPY --from=work /etc/passwd /passwd\n")
    return ctx


def test_tty_progress_is_live_and_ends_as_plain_does(
        distill: RunDistill, busybox_image: str, store_root: Path, tmp_path: Path) -> None:
    ctx = _context(tmp_path, busybox_image)
    env = {**os.environ, "DISTILL_ROOT": str(store_root), "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    code, live = _under_pty([DISTILL, "build", "--progress", "tty", "--no-cache", str(ctx)],
                            env)
    assert code == 0, live
    plain = distill("build", "--progress", "plain", "--no-cache", str(ctx))
    # redrawn in place: the cursor goes up over the live lines again and again
    assert live.count("\x1b[1A") >= 5 and "\x1b[2K" in live, live
    text = _ANSI.sub("", live)
    timers = set(re.findall(r"=> \[work 2/2\] RUN for i in .*?(\d+\.\d)s", text))
    assert len(timers) >= 3, f"the running step's timer did not move: {timers}"
    assert "   line 1" in text and "   line 6" in text        # its output, under it
    assert re.search(r"=> \[work 2/2\] RUN for i in .* \d+\.\ds\s*$", text, re.MULTILINE)
    assert not re.search(r"^#\d+ ", text, re.MULTILINE)           # not the plain log
    assert _summary(live) == _summary(plain.stderr)
    # and the image's digest last, as plain ends (stdout: the same terminal here)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", text.strip().splitlines()[-1])


def test_auto_is_tty_on_a_terminal_and_plain_elsewhere(
        distill: RunDistill, busybox_image: str, store_root: Path, tmp_path: Path) -> None:
    ctx = _context(tmp_path, busybox_image)
    env = {**os.environ, "DISTILL_ROOT": str(store_root), "TERM": "xterm-256color"}
    code, live = _under_pty([DISTILL, "build", "--no-cache", str(ctx)], env)
    assert code == 0, live
    assert "\x1b[1A" in live and "=> " in live
    piped = distill("build", "--no-cache", str(ctx))
    steps = parse_plain(piped.stderr)
    assert [s.outcome for s in steps if "RUN" in s.title] == ["DONE"]
    run = next(s for s in steps if "RUN" in s.title)
    assert run.output == [f"line {i}" for i in range(1, 7)]
    assert "\x1b[" not in piped.stderr


def test_a_failed_step_stays_on_screen_with_its_last_lines(
        busybox_image: str, store_root: Path, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {busybox_image}\n"
                                    "RUN echo about to fail; exit 3\n")
    env = {**os.environ, "DISTILL_ROOT": str(store_root), "TERM": "xterm-256color"}
    code, live = _under_pty([DISTILL, "build", "--progress", "tty", "--no-cache", str(ctx)],
                            env)
    text = _ANSI.sub("", live)
    assert code == 1, text
    assert re.search(r"=> ERROR \[0 2/2\] RUN echo about to fail", text), text
    assert "about to fail" in text and "error:" in text and "Traceback" not in text
