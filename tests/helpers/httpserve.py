"""A real HTTP server on 127.0.0.1 for tests: a directory's files, Last-Modified from
each file's mtime (Python's SimpleHTTPRequestHandler), quiet."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    answered: list[tuple[str, int]] | None = None

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if self.answered is not None:
            self.answered.append((self.path, int(code)))

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve_directory(directory: Path,
                    answered: list[tuple[str, int]] | None = None) -> Iterator[str]:
    """Serve ``directory`` until the block ends; yields the base URL. ``answered`` gets
    the (path, status) of every request."""
    handler = functools.partial(type("Handler", (_QuietHandler,), {"answered": answered}),
                                directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
