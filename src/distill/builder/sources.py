"""COPY sources: literal paths and globs, resolved inside a root (a context or a stage's rootfs)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from distill.confine import resolve_in_root, walk
from distill.dockerfile.kernel import check_path
from distill.errors import ContextError
from distill.ignore import PatternMatcher

_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class Source:
    rel: str          # the path inside the root, for messages and cache keys
    host: Path        # resolved host path (symlinks followed inside the root)
    #: the copy's root inside the root (BuildKit's copy source): the source itself for a
    #: literal path or a glob match (None), the ``/./`` pivot (or the root) for
    #: ``--parents``. --exclude patterns match paths
    #: relative to it, and --parents keeps the source's path relative to it.
    base: str | None = None
    #: the root it was resolved in (a context or a rootfs), when it was resolved in one:
    #: --parents takes the directories on the way from there, resolved inside it.
    root: Path | None = None

    @property
    def base_rel(self) -> str:
        return self.rel if self.base is None else self.base

    def path_from_base(self, host_path: Path | str | None = None) -> str:
        """The path of ``host_path`` (inside this source; default the source itself)
        relative to :attr:`base_rel`; "." for the base itself."""
        inner = "." if host_path is None else os.path.relpath(host_path, self.host)
        top = os.path.relpath(self.rel or ".", self.base_rel or ".")
        return os.path.normpath(os.path.join(top, inner))


def has_glob(pattern: str) -> bool:
    return bool(_GLOB_CHARS.search(pattern.replace("\\\\", "")))


@lru_cache(maxsize=256)
def _compile(component: str) -> re.Pattern[str]:
    """Go filepath.Match for one path component: * ? [class] and backslash escapes."""
    out, i, n = [], 0, len(component)
    while i < n:
        c = component[i]
        if c == "\\" and i + 1 < n:
            out.append(re.escape(component[i + 1]))
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            j = i + 1
            negate = j < n and component[j] in "^!"
            if negate:
                j += 1
            body = []
            while j < n and component[j] != "]":
                if component[j] == "\\" and j + 1 < n:
                    j += 1
                body.append(re.escape(component[j]) if component[j] != "-" else "-")
                j += 1
            if j >= n:
                raise ContextError(f"syntax error in pattern {component!r}")
            out.append("[" + ("^" if negate else "") + "".join(body) + "]")
            i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


Allow = Callable[[Path], bool]


def _glob(root: Path, pattern: str, allow: Allow | None) -> list[Source]:
    """Every path inside ``root`` the glob matches. Each match is a copy root of its own
    (BuildKit resolves the wildcard, then copies each match as if named literally), so
    --exclude patterns match paths relative to it and never exclude the match itself."""
    parts = [p for p in pattern.split("/") if p not in ("", ".")]
    current: list[str] = [""]
    for part in parts:
        nxt: list[str] = []
        for parent in current:
            if not has_glob(part):
                nxt.append(f"{parent}/{part}" if parent else part)
                continue
            directory = resolve_in_root(root, parent or "/")
            try:
                names = sorted(os.listdir(directory))
            except (NotADirectoryError, FileNotFoundError):
                continue
            rx = _compile(part)
            nxt += [f"{parent}/{n}" if parent else n for n in names if rx.match(n)]
        current = nxt
    found = []
    for rel in current:
        host = resolve_in_root(root, rel)
        if os.path.lexists(host) and (allow is None or allow(host)):
            found.append(Source(rel, host, root=root))
    return found


def _check_escape(pattern: str, forbid_escape: bool) -> None:
    """A source path no file system can hold, or (from a context) one that leaves it."""
    check_path(pattern, "source", lengths=not has_glob(pattern))
    if forbid_escape and os.path.normpath(pattern.lstrip("/") or ".").split("/")[0] == "..":
        raise ContextError(f"forbidden path outside the build context: {pattern}")


def resolve_sources(root: Path, patterns: list[str], what: str,
                    forbid_escape: bool = False, allow: Allow | None = None) -> list[Source]:
    """Match every pattern inside root. A literal that matches nothing is an error;
    a wildcard that matches nothing is allowed (as BuildKit allows it). ``allow``
    filters paths (.dockerignore): what it rejects does not exist."""
    out: list[Source] = []
    for pattern in patterns:
        _check_escape(pattern, forbid_escape)
        if has_glob(pattern):
            out += _glob(root, pattern, allow)
            continue
        rel = os.path.normpath("/" + pattern).lstrip("/") or "."
        host = resolve_in_root(root, pattern)
        if not os.path.lexists(host) or (allow is not None and not allow(host)):
            raise ContextError(f"{pattern!r} not found in {what}")
        out.append(Source(rel, host, root=root))
    return out


def resolve_parents_glob(root: Path, pattern: str, *, forbid_escape: bool = False,
                         allow: Allow | None = None) -> list[Source]:
    """COPY --parents with a wildcard: BuildKit copies from the ``/./`` pivot (else the
    root) with the rest of the pattern as an *include pattern* (moby/patternmatcher, the
    .dockerignore syntax, so ``**`` matches any number of directories, none included):
    every path under the pivot the pattern matches, with all it holds. Each match's
    ``base`` is its pivot; symlinks inside the pivot are not followed. A wildcard in the
    pivot itself is a plain glob (one copy root per match)."""
    _check_escape(pattern, forbid_escape)
    pivot, sep, rest = pattern.partition("/./")
    if not sep:
        pivot, rest = ".", pattern
    rest = os.path.normpath("/" + rest).lstrip("/")
    if has_glob(pivot):
        roots = [(s.rel, s.host) for s in _glob(root, pivot, allow)]
    else:
        rel = os.path.normpath("/" + pivot).lstrip("/") or "."
        roots = [(rel, resolve_in_root(root, rel))]
    matcher = PatternMatcher([rest])
    found = []
    for base, top in roots:
        if not os.path.isdir(top):
            continue
        for dirpath, dirnames, filenames in walk(top):
            inside = os.path.relpath(dirpath, top)
            descend = []
            for name in sorted(dirnames + filenames):
                rel = name if inside == "." else f"{inside}/{name}"
                host = Path(dirpath, name)
                if matcher.matches_or_parent_matches(rel):
                    if allow is None or allow(host):
                        found.append(Source(rel if base == "." else f"{base}/{rel}", host,
                                            base, root))
                elif name in dirnames:
                    descend.append(name)
            dirnames[:] = descend
    return found
