"""A no-change rebuild in milliseconds: the record of a whole build, replayed.

Every step of a build is cached (builder/operation.py), but getting to the steps costs
most of a rebuild: starting Python, importing the frontend and the builder, parsing the
Dockerfile, hashing the context. So a finished build also leaves a record under
``STORE/memo/``, keyed on everything the build read before its first step:

* this distill (the name, size and mtime of each of its source files);
* the flags of ``build`` (not those of presentation: -q, --progress, --jobs), the
  working directory, and the environment
  variables a build reads (SOURCE_DATE_EPOCH, registries and credentials' locations,
  the store's, and those ``--build-arg NAME`` takes its value from);
* the whole build context, and each local ``--build-context`` directory and ``-f``
  file (with the ``.dockerignore`` beside it), symlinks to them followed: every entry's name, type, mode, owner, size, inode, mtime and ctime (an
  ignored file counts too: changing one costs a slow rebuild, never a wrong one);
* the store's ``index.json`` as the build left it (the images FROM names, and the tags
  it set).

A later ``distill build`` whose key matches, and whose image is still whole in the
store with its tags pointing at it, prints what that build printed (every step
cached) and its digest, importing nothing of the builder. Anything else goes the
normal way, which is never wrong: a record only skips work that would have been a
cache hit. A build that ADDs from a URL or a git repository is never recorded (its sources
live on servers: each build asks them, through the step's key). A build is recorded
only with outputs the record can replay (the store),
and only when no input changed while it ran nor within the clock's granularity before
(git's racy-clean rule, as for builder/contenthash.py).

This module imports only the standard library (and the store's location, a leaf; and
``owned`` when it records): it runs
before anything else is loaded.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import stat
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from distill.store.location import default_root

MEMO_FORMAT = 1
RACY_NS = 2_000_000_000
#: what a build reads from the environment besides --build-arg NAME's values
ENVIRONMENT = ("SOURCE_DATE_EPOCH", "DISTILL_ROOT", "DISTILL_REGISTRIES", "DOCKER_CONFIG",
               "XDG_DATA_HOME", "XDG_CONFIG_HOME", "HOME", "SSH_AUTH_SOCK")
#: flags that change only what is printed, or how fast: not in the key
PRESENTATION = ("quiet", "progress", "jobs", "argv", "run", "command")
#: flags whose work a record cannot replay (an output, a push, a cache export, a pull),
#: or whose files and sockets the key does not cover (secrets, ssh agents)
UNREPLAYABLE = ("output", "push", "load", "cache_from", "cache_to", "iidfile", "secret", "ssh",
                "metadata_file", "no_cache", "pull", "report", "sbom")
_PACKAGE = Path(__file__).resolve().parents[1]


def replayable(args: Any) -> bool:
    return not any(getattr(args, name, None) for name in UNREPLAYABLE)


class _Tree:
    """A stat summary of a directory tree (or one file), and the newest ctime in it."""

    def __init__(self) -> None:
        self.h = hashlib.sha256()
        self.newest_ctime = 0

    def add(self, rel: str, st: os.stat_result) -> None:
        self.h.update(f"{rel}\0{st.st_mode:o}\0{st.st_uid}\0{st.st_gid}\0{st.st_size}\0"
                      f"{st.st_ino}\0{st.st_dev}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\n"
                      .encode("utf-8", "surrogateescape"))
        self.newest_ctime = max(self.newest_ctime, st.st_ctime_ns)

    def walk(self, root: str) -> _Tree:
        """The tree at ``root``, a symlink there followed (as the build follows it: a
        context or -f given as a link), with the link itself counted too."""
        if os.path.islink(root):
            self.add("@link", os.lstat(root))
            self.h.update(os.fsencode(os.readlink(root)) + b"\n")
        real = os.path.realpath(root)
        st = os.lstat(real)
        self.add(".", st)
        if stat.S_ISDIR(st.st_mode):
            self._walk_dir(real, "")
        return self

    def maybe(self, path: str) -> _Tree:
        """``walk``, or "missing" when nothing is there (a missing file is an input too)."""
        if os.path.lexists(path):
            return self.walk(path)
        self.h.update(b"missing\n")
        return self

    def _walk_dir(self, path: str, rel: str) -> None:
        """Depth first, each directory's entries by name; without recursion (a context
        can be deeper than the interpreter's recursion limit)."""
        pending = [(path, rel)]
        while pending:
            path, rel = pending.pop()
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
            below = []
            for entry in entries:
                name = f"{rel}/{entry.name}" if rel else entry.name
                st = entry.stat(follow_symlinks=False)
                self.add(name, st)
                if stat.S_ISDIR(st.st_mode):
                    below.append((entry.path, name))
            pending.extend(reversed(below))


def _package_fingerprint() -> str:
    tree = _Tree()
    for dirpath, dirnames, filenames in os.walk(_PACKAGE):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if name.endswith((".py", ".json")):
                path = os.path.join(dirpath, name)
                st = os.stat(path)
                tree.h.update(f"{os.path.relpath(path, _PACKAGE)}\0{st.st_size}\0"
                              f"{st.st_mtime_ns}\n".encode())
    return tree.h.hexdigest()


class Inputs:
    """What one build reads before its first step, summarized (see the module doc)."""

    def __init__(self, args: Any) -> None:
        bare = [v for v in getattr(args, "build_arg", []) if "=" not in v]
        self.flags = {k: v for k, v in sorted(vars(args).items()) if k not in PRESENTATION}
        self.environ = {k: os.environ.get(k) for k in (*ENVIRONMENT, *bare)}
        self.cwd = os.getcwd()
        trees = {"context": _Tree().walk(args.context)}
        if getattr(args, "file", None):
            trees["file"] = _Tree().walk(args.file)
            # the ignore file the build reads beside a -f Dockerfile (ignore/files.py)
            for n, beside in enumerate(sorted({args.file, os.path.realpath(args.file)})):
                trees[f"file-ignore-{n}"] = _Tree().maybe(beside + ".dockerignore")
        for spec in getattr(args, "build_context", []):
            _, _, value = spec.partition("=")
            if value.startswith("docker-image://"):
                continue                        # an image: the store's index covers it
            path = value.removeprefix("oci-layout://")
            if value.startswith("oci-layout://") and not os.path.exists(path):
                path = path.rpartition(":")[0]  # oci-layout://PATH:TAG
            if "://" in value and not value.startswith("oci-layout://"):
                raise OSError(f"--build-context {spec}: not a source a record covers")
            trees[f"named:{spec}"] = _Tree().walk(path)   # missing: OSError, no record
        self.trees = {name: tree.h.hexdigest() for name, tree in trees.items()}
        self.newest_ctime = max(tree.newest_ctime for tree in trees.values())

    def same_files(self, other: Inputs) -> bool:
        return self.trees == other.trees

    def key(self, index: bytes) -> str:
        material = {"format": MEMO_FORMAT, "distill": _package_fingerprint(),
                    "flags": self.flags, "cwd": self.cwd, "environ": self.environ,
                    "trees": self.trees, "index": hashlib.sha256(index).hexdigest()}
        return hashlib.sha256(json.dumps(material, sort_keys=True).encode(
            "utf-8", "surrogateescape")).hexdigest()


def _index_names(index: bytes) -> dict[str, str]:
    doc = json.loads(index)
    return {m.get("annotations", {}).get("org.opencontainers.image.ref.name", ""):
            m.get("digest", "") for m in doc.get("manifests", []) if isinstance(m, dict)}


def record(root: Path, before: Inputs, args: Any, *, digest: str,
           blobs: Sequence[str], names: Sequence[str], lines: Sequence[tuple[str, bool]],
           sizes: dict[str, Any], warnings: Sequence[str],
           fetched: bool = False) -> bool:
    """Leave the record of a finished build; False when it must not be replayed (an
    input changed while it ran, or too recently to tell; or it ADDed from a URL or a git
    repository, whose content no local stat can vouch for: such a build goes the normal
    way, where the step's key asks the server)."""
    if not replayable(args) or fetched:
        return False
    try:
        after = Inputs(args)
        if not before.same_files(after) or \
                after.newest_ctime >= time.time_ns() - RACY_NS:
            return False
        index = (root / "index.json").read_bytes()
        value = {"digest": digest, "blobs": list(blobs), "names": list(names),
                 "lines": [list(line) for line in lines], "sizes": sizes,
                 "warnings": list(warnings)}
        memo = root / "memo"
        memo.mkdir(mode=0o700, exist_ok=True)
        path = memo / after.key(index)
        # in the store's temp directory of this process (removed if it is killed), when
        # there is one; else beside the record
        from distill.owned import process_tag  # only when recording: replays stay lean

        own = root / "tmp" / process_tag(os.getpid())
        tmp = (own if own.is_dir() else memo) / f".{path.name}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(value))
        os.replace(tmp, path)
        return True
    except (OSError, ValueError):
        return False                # only a shortcut: the next build takes the long way


def replayed_lines(value: dict[str, Any]) -> Iterator[str]:
    """The progress lines of a replayed build: its steps, each layer step cached (FROM and
    the steps that only change the config show no result line, as in a build)."""
    for n, (line, layer_step) in enumerate(value["lines"], 1):
        if n > 1:
            yield ""              # BuildKit's plain log: a blank line between steps
        yield f"#{n} {line}"
        if layer_step:
            yield f"#{n} CACHED"


def replay(args: Any) -> dict[str, Any] | None:
    """The record of an identical build whose image is whole and still tagged as it left
    it (its ``digest``, ``lines``, ``sizes`` and ``warnings``), or None."""
    if not replayable(args):
        return None
    root = default_root()
    try:
        with open(root / "store.lock", "a") as lock:   # as every store user: no prune now
            fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
            index = (root / "index.json").read_bytes()
            value: dict[str, Any] = json.loads(
                (root / "memo" / Inputs(args).key(index)).read_text())
            names = _index_names(index)
            if not isinstance(value["sizes"]["stages"], list):   # a record of old
                return None
            if any(names.get(name) != value["digest"] for name in value["names"]):
                return None
            if not all((root / "blobs/sha256" / b.split(":", 1)[1]).is_file()
                       for b in value["blobs"]):
                return None
            return value
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
