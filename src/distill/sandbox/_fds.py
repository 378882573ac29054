"""File descriptor plumbing for the bubblewrap runner: pipes, memory files, output relay."""

from __future__ import annotations

import os
from typing import Protocol, Self

_TAIL = 8192


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class OutputSink(Protocol):
    """Where a sandboxed command's output goes (a file, or a step's progress)."""

    def write(self, data: bytes, /) -> int: ...

    def flush(self) -> None: ...


def relay(source: int, sink: OutputSink | None) -> bytes:
    """Copy the process output to ``sink`` (or our fd 1) until EOF; return its tail."""
    tail = bytearray()
    while chunk := os.read(source, 65536):
        if sink is not None:
            sink.write(chunk)
        else:
            write_all(1, chunk)
        tail += chunk
        del tail[:-_TAIL]
    if sink is not None:
        sink.flush()
    return bytes(tail)


class Fds:
    """File descriptors that are closed on exit unless closed before."""

    def __init__(self) -> None:
        self._open: set[int] = set()

    def memfd(self, data: bytes) -> int:
        """An anonymous memory file holding ``data``, positioned at its start."""
        fd = os.memfd_create("distill-args", 0)
        self._open.add(fd)
        write_all(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
        return fd

    def pipe(self) -> tuple[int, int]:
        read_end, write_end = os.pipe()
        self._open |= {read_end, write_end}
        return read_end, write_end

    def close(self, *fds: int) -> None:
        for fd in fds:
            if fd in self._open:
                self._open.discard(fd)
                os.close(fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close(*self._open)
