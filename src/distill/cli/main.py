"""The distill command line: flags -> library calls; errors -> messages and exit codes."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence

from distill import __version__

# Commands that mount filesystems run in a private mount namespace, entered before
# anything starts threads. ``build`` enters it itself, after it has looked for a record
# to replay (cli/build_flags.py): a replay mounts nothing.
MOUNTING_COMMANDS = {"base"}

#: Commands that never touch the store or mount: the only ones an ordinary user runs
#: outside distill's own user namespace (see distill.sandbox.rootless).
NO_STORE_COMMANDS = {"login", "logout"}


#: which module defines each command (importing all of them costs a start-up: a
#: command's module, and what it imports, is loaded only when it runs)
COMMANDS = {"build": "build_flags", "base": "base", "images": "images", "prune": "images",
            "import": "images", "pull": "registry", "push": "registry", "login": "registry",
            "logout": "registry", "load": "load", "store": "store", "analyze": "analyze"}


def parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser: every command's, or only ``command``'s when it is known."""
    import importlib

    p = argparse.ArgumentParser(prog="distill", description=__doc__)
    p.add_argument("--version", action="version", version=f"distill {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    wanted = [COMMANDS[command]] if command in COMMANDS else \
        list(dict.fromkeys(COMMANDS.values()))
    for name in wanted:
        module = importlib.import_module(f"distill.cli.{name}")
        (getattr(module, "add_parsers", None) or module.add_parser)(sub)
    return p


class Terminated(KeyboardInterrupt):
    """SIGTERM (a cancelled CI job, `docker stop`, a pod's end): handled as Ctrl-C is."""


def _terminate(_signum: int, _frame: object) -> None:
    raise Terminated


def _interrupted(e: KeyboardInterrupt) -> int:
    """Say so and exit: at once when threads are still at work (a stage's COPY, a
    download), since waiting for them is what Ctrl-C is meant to skip; every write of
    theirs is safe to abandon (a temp file, removed by the next store user)."""
    terminated = isinstance(e, Terminated)
    print("terminated" if terminated else "interrupted", file=sys.stderr, flush=True)
    code = 143 if terminated else 130
    if threading.active_count() > 1:
        sys.stdout.flush()
        os._exit(code)
    return code


#: Python 3.11's shutil.rmtree recurses once per directory level; a tree from a context, an
#: image or a RUN may be as deep as PATH_MAX allows (2048 levels), past the default 1000.
RECURSION_LIMIT = 10_000


def _enter_user_namespace() -> None:
    """Rootless: run as root of a user namespace of distill's own (a re-exec), so that
    the store's files may have any owner and overlays may be mounted."""
    from distill.sandbox import rootless

    if rootless.needs_reexec():
        rootless.reexec()
    rootless.check_entered()


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), RECURSION_LIMIT))
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        if words and words[0] in COMMANDS and words[0] not in NO_STORE_COMMANDS:
            _enter_user_namespace()
        if MOUNTING_COMMANDS & set(words[:1]):
            from distill.sandbox.namespace import ensure_private_mount_namespace

            ensure_private_mount_namespace()
        args = parser(words[0] if words else None).parse_args(words)
        return int(args.run(args))
    except KeyboardInterrupt as e:
        return _interrupted(e)
    except Exception as e:
        # the error types and their rendering load only when there is an error to show
        from distill.cli.render import print_error
        from distill.errors import DistillError, UsageError, os_failure

        if isinstance(e, OSError) and not os.environ.get("DISTILL_DEBUG"):
            # a refusal no layer turned into a message (a full disk, a read-only store):
            # one line naming the path, never a traceback (DISTILL_DEBUG=1 shows it)
            e = os_failure(e, "distill could not go on")
        if not isinstance(e, DistillError):
            raise
        print_error(e)
        return 2 if isinstance(e, UsageError) else 1


if __name__ == "__main__":
    sys.exit(main())
