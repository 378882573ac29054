"""moby/patternmatcher (v0.6.1): pattern syntax checks, the glob -> Go regexp translation,
and :class:`PatternMatcher`.

``patternmatcher.New`` cleans each pattern and checks it with Go's ``filepath.Match``
syntax; each pattern is then turned, lazily, into an exact / prefix / suffix string test or
into a *Go* regular expression (:mod:`distill.ignore.goregexp`), built by the same
translation as upstream. Paths are '/'-separated and relative to the context root. Bad
patterns raise :class:`~distill.errors.ContextError` with Go's text, ``syntax error in
pattern``.
"""

from __future__ import annotations

from dataclasses import dataclass

from distill.errors import ContextError
from distill.gopath import clean
from distill.ignore.goregexp import GoRegexp, RegexError, UnsupportedRegex

__all__ = ["BAD_PATTERN", "MatchInfo", "PatternMatcher", "clean", "trim_space"]

BAD_PATTERN = "syntax error in pattern"  # Go's filepath.ErrBadPattern

# Go's unicode.IsSpace (what strings.TrimSpace strips). Python's str.strip() would also
# strip U+001C..U+001F, which Go keeps.
_GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def trim_space(s: str) -> str:
    """Go's strings.TrimSpace."""
    return s.strip(_GO_SPACE)


def _dir(path: str) -> str:
    """Go's filepath.Dir: everything up to the last '/', cleaned."""
    return clean(path[: path.rfind("/") + 1])


# --------------------------------------------------------------------------------------
# Go filepath.Match syntax check (what patternmatcher.New uses to reject a pattern)
# --------------------------------------------------------------------------------------

def _is_bad_rune(ch: str) -> bool:
    """A byte that was not valid UTF-8 (kept as a surrogate escape): Go sees RuneError/1."""
    return "\udc80" <= ch <= "\udcff"


def _scan_chunk(pattern: str, i: int) -> tuple[int, int]:
    """filepath.scanChunk: skip leading stars; return (chunk start, chunk end)."""
    n = len(pattern)
    while i < n and pattern[i] == "*":
        i += 1
    start = i
    in_range = False
    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 < n:
                i += 1
        elif c == "[":
            in_range = True
        elif c == "]":
            in_range = False
        elif c == "*" and not in_range:
            break
        i += 1
    return start, i


def _class_char(chunk: str, i: int) -> int:
    """filepath getEsc: index after one (possibly escaped) class character, or -1 if bad."""
    n = len(chunk)
    if i >= n or chunk[i] in "-]":
        return -1
    if chunk[i] == "\\":
        i += 1
        if i >= n:
            return -1
    if _is_bad_rune(chunk[i]):
        return -1
    i += 1
    return i if i < n else -1


def _chunk_ok(chunk: str) -> bool:
    """filepath.matchChunk's syntax checks (they do not depend on the name matched)."""
    i, n = 0, len(chunk)
    while i < n:
        c = chunk[i]
        if c == "[":
            i += 1
            if i < n and chunk[i] == "^":
                i += 1
            ranges = 0
            while True:
                if i < n and chunk[i] == "]" and ranges > 0:
                    i += 1
                    break
                i = _class_char(chunk, i)
                if i < 0:
                    return False
                if chunk[i] == "-":
                    i = _class_char(chunk, i + 1)
                    if i < 0:
                        return False
                ranges += 1
        elif c == "\\":
            i += 2
            if i > n:
                return False
        else:
            i += 1
    return True


def _glob_syntax_ok(pattern: str) -> bool:
    """True unless Go's ``filepath.Match(pattern, ".")`` returns ErrBadPattern.

    Match checks every chunk of the pattern (also after a failed match, since Go 1.20),
    so the answer does not depend on the name.
    """
    i = 0
    while i < len(pattern):
        start, i = _scan_chunk(pattern, i)
        if not _chunk_ok(pattern[start:i]):
            return False
    return True


# --------------------------------------------------------------------------------------
# patternmatcher's pattern -> Go regexp translation
# --------------------------------------------------------------------------------------

EXACT, PREFIX, SUFFIX, REGEXP = "exact", "prefix", "suffix", "regexp"
# patternmatcher's shouldEscape. Upstream lists `.+()|{}$`, but its 8-byte bitmap drops
# every character >= 64, so '|', '{' and '}' reach the Go regexp unescaped: '|' is an
# alternation there and '{n,m}' a counted repetition.
_REGEX_ESCAPED = frozenset(".+()$")


def translate(pattern: str, sep: str = "/") -> tuple[str, str | None]:
    """(match type, Go regexp source or None), as ``Pattern.compile(sep)`` builds them.

    ``pattern`` is the cleaned pattern without its '!'. Like Go's text/scanner, a leading BOM
    is skipped and bytes that are not UTF-8 read as U+FFFD.
    """
    chars = ["\ufffd" if _is_bad_rune(c) else c for c in pattern]
    if chars and chars[0] == "\ufeff":
        del chars[0]
    esc_sep = "\\\\" if sep == "\\" else sep
    out = ["^"]
    kind = EXACT
    pos, n = 0, len(chars)
    for i in range(n):  # i counts scanned characters, like upstream's loop counter
        if pos >= n:
            break
        ch = chars[pos]
        pos += 1
        if ch == "*":
            if pos < n and chars[pos] == "*":
                pos += 1
                if pos < n and chars[pos] == sep:
                    pos += 1
                if pos >= n:
                    # "**" at the end: everything below
                    if kind == EXACT:
                        kind = PREFIX
                    else:
                        out.append(".*")
                        kind = REGEXP
                else:
                    out.append("(.*" + esc_sep + ")?")
                    kind = REGEXP
                if i == 0:
                    kind = SUFFIX
            else:
                out.append("[^" + esc_sep + "]*")
                kind = REGEXP
        elif ch == "?":
            out.append("[^" + esc_sep + "]")
            kind = REGEXP
        elif ch in _REGEX_ESCAPED:
            out.append("\\" + ch)
        elif ch == "\\":
            if sep == "\\":
                out.append(esc_sep)
                continue
            if pos < n:
                out.append("\\" + chars[pos])
                pos += 1
                kind = REGEXP
            else:
                out.append("\\")
        elif ch in "[]":
            out.append(ch)
            kind = REGEXP
        else:
            out.append(ch)
    if kind != REGEXP:
        return kind, None
    out.append("$")
    return kind, "".join(out)


_BAD_BYTES = {cp: "\ufffd" for cp in range(0xDC80, 0xDD00)}


# --------------------------------------------------------------------------------------
# patternmatcher
# --------------------------------------------------------------------------------------

class _Pattern:
    __slots__ = ("dirs", "error", "exclusion", "kind", "literal", "regexp", "text")

    def __init__(self, text: str, exclusion: bool) -> None:
        self.text = text  # cleaned, without the '!'
        self.dirs = text.split("/")
        self.exclusion = exclusion
        self.kind: str | None = None  # compiled lazily, as upstream does
        self.literal: str | bytes = ""  # the prefix or suffix to compare with
        self.regexp: GoRegexp | None = None
        self.error = False

    def _compile(self) -> None:
        kind, source = translate(self.text)
        if kind == REGEXP:
            assert source is not None
            try:
                self.regexp = GoRegexp(source)
            except RegexError:
                self.error = True  # upstream: every later match() fails again
                return
            except UnsupportedRegex as e:
                raise ContextError(
                    f"unsupported .dockerignore pattern {self.text!r}: {e} is valid for "
                    "Docker (the pattern becomes a Go regexp) but distill cannot match it"
                ) from e
        elif kind == PREFIX:
            self.literal = self.text[:-2]
        elif kind == SUFFIX:
            self.literal = self.text[2:]
            if self.text.startswith("\ufeff"):
                # The scanner skipped a leading BOM, but upstream cuts pattern[2:] in bytes,
                # which splits the BOM: compare bytes then.
                self.literal = self.text.encode("utf-8", "surrogateescape")[2:]
        self.kind = kind

    def match(self, path: str) -> bool:
        if self.kind is None:
            if not self.error:
                self._compile()
            if self.error:
                raise ContextError(BAD_PATTERN, hint=f"in pattern {self.text!r}")
        kind = self.kind
        if kind == EXACT:
            return path == self.text
        literal = self.literal
        if kind == PREFIX:
            assert isinstance(literal, str)
            return path.startswith(literal)
        if kind == SUFFIX:
            if isinstance(literal, bytes):
                raw = path.encode("utf-8", "surrogateescape")
                return raw.endswith(literal) or (literal[:1] == b"/" and raw == literal[1:])
            # "**/foo" also matches "foo" itself
            return path.endswith(literal) or (literal[:1] == "/" and path == literal[1:])
        assert self.regexp is not None
        if not path.isascii():
            path = path.translate(_BAD_BYTES)  # Go reads invalid UTF-8 as U+FFFD
        return self.regexp.search(path)

    def match_quiet(self, path: str) -> bool:
        """match() with errors ignored (upstream ignores them on parent directories)."""
        try:
            return self.match(path)
        except ContextError:
            return False


@dataclass(frozen=True, slots=True)
class MatchInfo:
    """Per-pattern results for a directory, handed to its children during a walk
    (patternmatcher's MatchInfo). The empty value means "no information"."""

    parent_matched: tuple[bool, ...] = ()


def _parent_prefixes(path: str) -> list[str]:
    """'a/b/c' -> ['a', 'a/b'] (upstream's parentPathDirs joins); [] for top-level paths."""
    parent = _dir(path)
    if parent == ".":
        return []
    dirs = parent.split("/")
    return ["/".join(dirs[: i + 1]) for i in range(len(dirs))]


class PatternMatcher:
    """moby/patternmatcher's PatternMatcher (v0.6.1).

    Patterns are trimmed, cleaned (``docs/`` == ``docs``), empty ones dropped; a leading
    ``!`` makes an exclusion (re-include). The last pattern that matches a path wins; a
    pattern matches a path if it matches the path itself or one of its parent directories.
    """

    def __init__(self, patterns: list[str]) -> None:
        self._patterns: list[_Pattern] = []
        self._exclusions = False
        for raw in patterns:
            p = trim_space(raw)
            if not p:
                continue
            p = clean(p)
            exclusion = p.startswith("!")
            if exclusion:
                if len(p) == 1:
                    raise ContextError('illegal exclusion pattern: "!"')
                p = p[1:]
                self._exclusions = True
            if not _glob_syntax_ok(p):
                raise ContextError(BAD_PATTERN, hint=f"in pattern {raw!r}")
            self._patterns.append(_Pattern(p, exclusion))
        self._prefix_only_exclusions, self._exclusion_prefixes = self._exclusion_shape()

    # -- introspection ----------------------------------------------------------------

    @property
    def exclusions(self) -> bool:
        """True if any pattern is a ``!`` exclusion."""
        return self._exclusions

    @property
    def patterns(self) -> list[str]:
        """The cleaned patterns, with their ``!``."""
        return [("!" if p.exclusion else "") + p.text for p in self._patterns]

    def __repr__(self) -> str:
        return f"PatternMatcher({self.patterns!r})"

    # -- matching ---------------------------------------------------------------------

    def matches(self, path: str) -> bool:
        """Upstream's package-level ``Matches(path, patterns)``, the deprecated one.

        The path is cleaned and ``.`` never matches. Parent directories are checked only
        through *one* prefix: the first ``len(pattern's dirs)`` elements of the path's
        parent (upstream documents this as buggy; use :meth:`matches_or_parent_matches`).
        """
        path = clean(path)
        if path == ".":
            return False
        matched = False
        parent = _dir(path)
        parent_dirs = parent.split("/")
        for pattern in self._patterns:
            if pattern.exclusion != matched:
                continue
            hit = pattern.match(path)
            if not hit and parent != "." and len(pattern.dirs) <= len(parent_dirs):
                hit = pattern.match_quiet("/".join(parent_dirs[: len(pattern.dirs)]))
            if hit:
                matched = not pattern.exclusion
        return matched

    def matches_or_parent_matches(self, path: str) -> bool:
        """``MatchesOrParentMatches``: the last pattern matching the path or any of its
        parent directories decides."""
        matched = False
        prefixes: list[str] | None = None
        for pattern in self._patterns:
            if pattern.exclusion != matched:
                continue
            hit = pattern.match(path)
            if not hit:
                if prefixes is None:
                    prefixes = _parent_prefixes(path)
                hit = any(pattern.match_quiet(prefix) for prefix in prefixes)
            if hit:
                matched = not pattern.exclusion
        return matched

    def match_with_parent_info(
        self, path: str, parent: MatchInfo | None = None
    ) -> tuple[bool, MatchInfo]:
        """``MatchesUsingParentResults``: match ``path`` given its parent directory's
        MatchInfo; returns the result and the MatchInfo to pass to ``path``'s children.

        A pattern that matched the parent counts as matching the child. With no parent
        information (``None`` or an empty MatchInfo) parents are checked as in
        :meth:`matches_or_parent_matches`.
        """
        parent_matched = parent.parent_matched if parent is not None else ()
        if parent_matched and len(parent_matched) != len(self._patterns):
            raise ContextError("wrong number of values in parentMatched")
        matched = False
        results: list[bool] = []
        prefixes: list[str] | None = None
        for i, pattern in enumerate(self._patterns):
            hit = parent_matched[i] if parent_matched else False
            if not hit:
                if pattern.exclusion != matched:
                    results.append(False)
                    continue
                hit = pattern.match(path)
                if not hit and not parent_matched:
                    if prefixes is None:
                        prefixes = _parent_prefixes(path)
                    hit = any(pattern.match_quiet(prefix) for prefix in prefixes)
            results.append(hit)
            if hit:
                matched = not pattern.exclusion
        return matched, MatchInfo(tuple(results))

    def matches_using_parent_results(
        self, path: str, parent_matched: bool | MatchInfo | None = None
    ) -> bool:
        """Match ``path`` during a walk, knowing what its parent directory gave.

        * a :class:`MatchInfo` (or ``None``): ``MatchesUsingParentResults``, what fsutil
          uses; get the MatchInfo of a directory from :meth:`match_with_parent_info`;
        * a ``bool`` (whether the parent matched): the deprecated
          ``MatchesUsingParentResult``. It starts from the parent's answer and only tests
          the path itself, so a re-included directory's children are not re-included by
          the same pattern (``**`` + ``!dir``: ``dir/x`` stays ignored; docker/buildx#850).
        """
        if isinstance(parent_matched, bool):
            matched = parent_matched
            for pattern in self._patterns:
                if pattern.exclusion != matched:
                    continue
                if pattern.match(path):
                    matched = not pattern.exclusion
            return matched
        return self.match_with_parent_info(path, parent_matched)[0]

    # -- fsutil's directory pruning ---------------------------------------------------

    def _exclusion_shape(self) -> tuple[bool, tuple[str, ...]]:
        prefix_only = True
        prefixes = []
        for pattern in self._patterns:
            if not pattern.exclusion:
                continue
            stem = pattern.text.removesuffix("/**").removesuffix("/*")
            if any(c in stem for c in "*[]?^\\"):
                prefix_only = False
            prefixes.append(stem + "/")
        return prefix_only, tuple(prefixes)

    def can_skip_dir(self, path: str) -> bool:
        """For an ignored directory: True if nothing below it can be re-included, so a walk
        need not enter it (fsutil's rule: only when every ``!`` pattern is a plain path,
        optionally ending in ``/*`` or ``/**``, and none of them lies below ``path``)."""
        if not self._prefix_only_exclusions:
            return False
        below = path + "/"
        return not any(prefix.startswith(below) for prefix in self._exclusion_prefixes)


