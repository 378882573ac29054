"""git servers for tests, on 127.0.0.1 (or an address the test names): bare repositories
served over git's dumb HTTP protocol, with the paths each client asked for."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e", "GIT_CONFIG_GLOBAL": "/dev/null",
           "GIT_CONFIG_NOSYSTEM": "1", "PATH": os.environ["PATH"]}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, check=True,
                          capture_output=True, text=True).stdout.strip()


def bare_repo(served: Path, name: str, files: dict[str, str], submodule: str | None = None,
              sub: str = "sub.git") -> Path:
    """``served/name``: a bare repository (with dumb-HTTP info) holding ``files``, and a
    submodule ``sub`` at URL ``submodule``, if given, at the commit of ``served/sub``."""
    work = Path(tempfile.mkdtemp(dir=served.parent))
    git(work, "init", "-q", "-b", "main")
    for rel, text in files.items():
        (work / rel).write_text(text)
    git(work, "add", ".")
    if submodule:
        commit = git(served / sub, "rev-parse", "HEAD")
        (work / ".gitmodules").write_text(f'[submodule "sub"]\n\tpath = sub\n'
                                          f"\turl = {submodule}\n")
        git(work, "add", ".gitmodules")
        git(work, "update-index", "--add", "--cacheinfo", f"160000,{commit},sub")
    git(work, "commit", "-q", "-m", "one")
    bare = served / name
    git(served, "clone", "-q", "--bare", str(work), name)
    git(bare, "update-server-info")
    (bare / "git-daemon-export-ok").touch()
    shutil.rmtree(work)
    return bare


@contextmanager
def http_server(address: str, directory: Path,
                redirect: str | None = None) -> Iterator[tuple[str, list[str]]]:
    """A dumb-HTTP git server for ``directory`` on ``address``; ``/moved.git/...`` is
    redirected to ``redirect`` + ``/repo.git/...``. Yields its base URL and the paths
    asked of it."""
    asked: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            if redirect and self.path.startswith("/moved.git/"):
                self.send_response(302)
                self.send_header("Location", redirect + "/repo.git/" +
                                 self.path.removeprefix("/moved.git/"))
                self.end_headers()
                return
            super().do_GET()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        (address, 0), functools.partial(Handler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{address}:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
