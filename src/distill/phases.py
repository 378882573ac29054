"""Where a build is, for the tests that kill it: with ``DISTILL_PHASE_LOG=FILE`` set, each
phase a build enters is appended to FILE as one line (one ``write(2)`` to a file opened
with O_APPEND, so a SIGKILL never leaves half a line), and a test that killed the build
reads the last line to learn where the kill landed. Without the variable this costs one
dictionary lookup per phase.

Phases: ``unpack`` (a layer extracted into a snapshot), ``run`` (a RUN's process),
``diff`` (an upper directory read into a layer tar), ``compress`` (a layer blob written),
``store`` (names and cache records written), ``output`` (an --output written),
``done``."""

from __future__ import annotations

import os

_fd: int | None = None


def enter(phase: str) -> None:
    global _fd
    path = os.environ.get("DISTILL_PHASE_LOG")
    if not path:
        return
    if _fd is None:
        _fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.write(_fd, f"{phase}\n".encode())
