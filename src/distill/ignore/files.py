"""The .dockerignore file and the filtered build context.

:func:`read_ignore_file` reads an ignore file like moby/patternmatcher's
``ignorefile.ReadAll``; :func:`load_context_ignore` finds the file BuildKit uses;
:func:`walk_context` walks the context like tonistiigi/fsutil's filtered walk, feeding
``MatchesUsingParentResults`` the parent directory's per-pattern results.
"""

from __future__ import annotations

import os
import stat as statmod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from distill.confine import NotRegularFileError, read_file_in_root
from distill.errors import ContextError, DistillError
from distill.gopath import clean
from distill.ignore.patterns import MatchInfo, PatternMatcher, trim_space

__all__ = ["DOCKERIGNORE", "load_context_ignore", "read_ignore_file", "walk_context"]

DOCKERIGNORE = ".dockerignore"

# The largest ignore file distill reads (BuildKit has no limit; this one only stops a
# hostile context from making distill read without end).
IGNORE_FILE_LIMIT = 16 << 20

# bufio.Scanner's default limit: a line (with its '\r', without '\n') must be shorter.
_MAX_LINE_BYTES = 64 * 1024


def _utf8_len(s: str) -> int:
    return len(s.encode("utf-8", "surrogateescape"))


# --------------------------------------------------------------------------------------
# ignorefile.ReadAll
# --------------------------------------------------------------------------------------

def read_ignore_file(text: str | None) -> list[str]:
    """The pattern list of a .dockerignore file, as ``ignorefile.ReadAll`` gives it.

    Lines split at '\\n' (one trailing '\\r' dropped); a BOM on the first line is removed; a
    line whose *first* character is '#' is a comment; other lines are trimmed, empty ones
    skipped; a leading '!' is kept and the rest re-trimmed, cleaned and stripped of one
    leading '/'. ``None`` (no file) gives ``[]``. A lone ``!`` stays ``!`` (the matcher
    rejects it later).
    """
    if text is None:
        return []
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # text ending in '\n' (or empty) has no extra last line
    patterns: list[str] = []
    for number, raw in enumerate(lines):
        if _utf8_len(raw) >= _MAX_LINE_BYTES:
            raise ContextError("bufio.Scanner: token too long",
                               hint=f"line {number + 1} of the ignore file is longer than 64 KiB")
        line = raw.removesuffix("\r")
        if number == 0 and line.startswith("\ufeff"):
            line = line[1:]
        if line.startswith("#"):
            continue
        pattern = trim_space(line)
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = trim_space(pattern[1:])
        if pattern:
            pattern = clean(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    return patterns


# --------------------------------------------------------------------------------------
# Finding the ignore file, walking the context
# --------------------------------------------------------------------------------------

def load_context_ignore(context_dir: Path, dockerfile: Path | None) -> PatternMatcher | None:
    """The ignore rules BuildKit applies to a build context.

    ``<Dockerfile>.dockerignore`` next to the Dockerfile wins (even when empty); else
    ``CONTEXT/.dockerignore``; ``None`` when neither file exists.

    Each is read inside its directory (the Dockerfile's, the context), as BuildKit reads
    them from the local sources the client sends: a symlink is followed only within it
    (one that leads out finds nothing there), a directory counts as no file, anything
    else that is no regular file, or a file over 16 MiB, is an error.
    """
    candidates = []
    if dockerfile is not None:
        dockerfile = Path(dockerfile)
        candidates.append((dockerfile.parent, dockerfile.name + DOCKERIGNORE))
    candidates.append((Path(context_dir), DOCKERIGNORE))
    for directory, name in candidates:
        candidate = directory / name
        try:
            data = read_file_in_root(directory, name, IGNORE_FILE_LIMIT, what=str(candidate))
        except NotRegularFileError as e:
            if statmod.S_ISDIR(e.mode):
                continue
            raise ContextError(e.message) from None
        except DistillError as e:
            raise ContextError(f"failed to read {candidate}: {e.message}") from None
        if data is None:
            continue
        text = data.decode("utf-8", "surrogateescape")
        try:
            return PatternMatcher(read_ignore_file(text))
        except ContextError as e:
            hint = f"{candidate}: {e.hint}" if e.hint else str(candidate)
            raise ContextError(e.message, hint=hint) from e
    return None


def _scandir(root: str, rel: str, ignored: bool) -> list[os.DirEntry[str]] | None:
    """A directory's entries in Go's os.ReadDir order (bytewise by name); None if it
    vanished, or if it cannot be read but is ignored anyway (fsutil skips those)."""
    try:
        with os.scandir(os.path.join(root, rel) if rel else root) as it:
            entries = list(it)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except PermissionError as e:
        if ignored:
            return None
        raise ContextError(f"open {rel or '.'}: permission denied") from e
    except OSError as e:
        raise ContextError(f"open {rel or '.'}: {e.strerror or e}") from e
    entries.sort(key=lambda e: os.fsencode(e.name))
    return entries


def walk_context(
    root: Path, matcher: PatternMatcher | None, start: str = ""
) -> Iterator[tuple[str, os.stat_result]]:
    """The build context as BuildKit sends it: every entry that is not ignored, as
    (relative '/'-separated path, lstat result), depth-first, each directory's entries in
    byte order of their names. Symlinks are listed, never followed.

    This is fsutil's filtered walk: matching uses the parent directory's per-pattern
    results; an ignored directory is skipped whole unless a ``!`` pattern could re-include
    something below it (see :meth:`PatternMatcher.can_skip_dir`); an ignored directory
    that holds re-included entries is listed too, just before the first of them, so that
    every entry has its parent.

    ``start`` restricts the output to that path and what is below it (paths stay relative
    to ``root``). ``start`` itself is listed when it would be in the full walk, so the
    output is empty exactly when ``start`` is not in the filtered context.
    """
    root_str = os.fspath(root)
    if not os.path.isdir(root_str):
        raise ContextError(f"build context {root_str} is not a directory")
    if matcher is not None and not matcher.patterns:
        matcher = None
    start = clean("/" + start.replace(os.sep, "/"))[1:]

    info: MatchInfo | None = None
    # (path, stat, listed?) for ignored directories on the current path
    pending: list[list[Any]] = []

    def judge(rel: str, parent: MatchInfo | None) -> tuple[bool, MatchInfo | None]:
        if matcher is None:
            return False, None
        return matcher.match_with_parent_info(rel, parent)

    # the ancestors of start: matched (for their MatchInfo), not listed
    frames: list[tuple[str, MatchInfo | None, Iterator[os.DirEntry[str]], bool]] = []
    if start:
        parts = start.split("/")
        rel = ""
        for k, part in enumerate(parts):
            rel = f"{rel}/{part}" if rel else part
            try:
                st = os.lstat(os.path.join(root_str, rel))
            except (FileNotFoundError, NotADirectoryError):
                return
            is_dir = statmod.S_ISDIR(st.st_mode)
            last = k == len(parts) - 1
            if not is_dir and not last:
                return
            ignored, child_info = judge(rel, info)
            if ignored and is_dir and matcher is not None and matcher.can_skip_dir(rel):
                return
            if last:
                if ignored:
                    if not is_dir:
                        return
                    pending.append([rel, st, False])
                else:
                    yield rel, st
                if is_dir:
                    entries = _scandir(root_str, rel, ignored)
                    if entries is not None:
                        frames.append((rel, child_info, iter(entries), ignored))
                break
            info = child_info
    else:
        entries = _scandir(root_str, "", False)
        if entries is not None:
            frames.append(("", None, iter(entries), False))

    while frames:
        dir_rel, dir_info, it, dir_ignored = frames[-1]
        entry = next(it, None)
        if entry is None:
            frames.pop()
            if dir_ignored and pending:
                pending.pop()
            continue
        rel = f"{dir_rel}/{entry.name}" if dir_rel else entry.name
        try:
            st = entry.stat(follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            continue
        is_dir = statmod.S_ISDIR(st.st_mode)
        ignored, child_info = judge(rel, dir_info)
        if ignored:
            if is_dir and not matcher.can_skip_dir(rel):  # type: ignore[union-attr]
                entries = _scandir(root_str, rel, True)
                if entries is not None:
                    pending.append([rel, st, False])
                    frames.append((rel, child_info, iter(entries), True))
            continue
        for item in pending:
            if not item[2]:
                item[2] = True
                yield item[0], item[1]
        yield rel, st
        if is_dir:
            entries = _scandir(root_str, rel, False)
            if entries is not None:
                frames.append((rel, child_info, iter(entries), False))
