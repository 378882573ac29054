""".dockerignore support with BuildKit's exact rules.

What BuildKit does, and what this module reproduces:

* the ignore file is read with moby/patternmatcher's ``ignorefile.ReadAll``
  (:func:`read_ignore_file`);
* the patterns go to ``patternmatcher.New`` (:class:`PatternMatcher`), which cleans them and
  checks them with Go's ``filepath.Match`` syntax;
* each pattern is then turned, lazily, into an exact / prefix / suffix string test or into a
  *Go* regular expression, built by the same translation as upstream. That translation leaves
  ``^``, ``[...]`` and backslash escapes to the Go regexp engine, so their meaning is RE2's, not
  the glob's: ``\\d`` is a digit class, ``[[:alpha:]]`` a POSIX class, a literal ``^`` anchors.
  This module parses the translated expression with RE2's rules and runs it on its own
  automaton (a lazily built DFA), so matching is linear in the path length whatever the
  pattern. (Upstream's escape bitmap drops '|', '{' and '}', so those reach the regexp too.)
  Not reproduced: Unicode *script* classes such as ``\\p{Greek}`` (refused with a
  ContextError), Go's limit on huge compiled regexps, and Unicode-version differences;
* the build context is walked like tonistiigi/fsutil's filtered walk
  (:func:`walk_context`), which feeds ``MatchesUsingParentResults`` the parent directory's
  per-pattern results.

Paths are '/'-separated and relative to the context root. Bad patterns raise
:class:`~distill.errors.ContextError` with Go's text, ``syntax error in pattern``.
"""

from __future__ import annotations

import os
import stat as statmod
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from distill.errors import ContextError

__all__ = [
    "BAD_PATTERN",
    "MatchInfo",
    "PatternMatcher",
    "load_context_ignore",
    "read_ignore_file",
    "walk_context",
]

BAD_PATTERN = "syntax error in pattern"  # Go's filepath.ErrBadPattern
DOCKERIGNORE = ".dockerignore"

# Go's unicode.IsSpace (what strings.TrimSpace strips). Python's str.strip() would also
# strip U+001C..U+001F, which Go keeps.
_GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)

# bufio.Scanner's default limit: a line (with its '\r', without '\n') must be shorter.
_MAX_LINE_BYTES = 64 * 1024


def _trim_space(s: str) -> str:
    return s.strip(_GO_SPACE)


def _utf8_len(s: str) -> int:
    return len(s.encode("utf-8", "surrogateescape"))


def _clean(path: str) -> str:
    """Go's path/filepath.Clean on a '/'-separated path."""
    if path == "":
        return "."
    rooted = path.startswith("/")
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    joined = "/".join(out)
    if rooted:
        return "/" + joined
    return joined or "."


def _dir(path: str) -> str:
    """Go's filepath.Dir: everything up to the last '/', cleaned."""
    return _clean(path[: path.rfind("/") + 1])


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
        line = raw[:-1] if raw.endswith("\r") else raw
        if number == 0 and line.startswith("\ufeff"):
            line = line[1:]
        if line.startswith("#"):
            continue
        pattern = _trim_space(line)
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = _trim_space(pattern[1:])
        if pattern:
            pattern = _clean(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    return patterns


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


def _translate(pattern: str, sep: str = "/") -> tuple[str, str | None]:
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


# --------------------------------------------------------------------------------------
# A Go (RE2 syntax, Perl flags) regexp parser and a lazy-DFA matcher
# --------------------------------------------------------------------------------------

class _RegexError(Exception):
    """Go's regexp.Compile would fail (patternmatcher turns this into ErrBadPattern)."""


_MAX_RUNE = 0x10FFFF

_PERL_CLASSES: dict[str, tuple[bool, tuple[tuple[int, int], ...]]] = {
    "d": (False, ((0x30, 0x39),)),
    "D": (True, ((0x30, 0x39),)),
    "s": (False, ((0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20))),
    "S": (True, ((0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20))),
    "w": (False, ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A))),
    "W": (True, ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A))),
}

_POSIX_CLASSES: dict[str, tuple[tuple[int, int], ...]] = {
    "alnum": ((0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)),
    "alpha": ((0x41, 0x5A), (0x61, 0x7A)),
    "ascii": ((0x00, 0x7F),),
    "blank": ((0x09, 0x09), (0x20, 0x20)),
    "cntrl": ((0x00, 0x1F), (0x7F, 0x7F)),
    "digit": ((0x30, 0x39),),
    "graph": ((0x21, 0x7E),),
    "lower": ((0x61, 0x7A),),
    "print": ((0x20, 0x7E),),
    "punct": ((0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)),
    "space": ((0x09, 0x0D), (0x20, 0x20)),
    "upper": ((0x41, 0x5A),),
    "word": ((0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A), (0x5F, 0x5F)),
    "xdigit": ((0x30, 0x39), (0x41, 0x46), (0x61, 0x66)),
}

# Go's unicode.Categories. Go's "C" is Cc|Cf|Co|Cs: unassigned code points are in no table.
_CATEGORY_NAMES = frozenset(
    "C Cc Cf Co Cs L Ll Lm Lo Lt Lu M Mc Me Mn N Nd Nl No P Pc Pd Pe Pf Pi Po Ps "
    "S Sc Sk Sm So Z Zl Zp Zs".split()
)


# Go's unicode.Scripts (Unicode 15, as in the Go that builds BuildKit). Python has no
# script data, so \p{Greek} and the like are recognised, and refused as unsupported.
_SCRIPT_NAMES = frozenset("""
Adlam Ahom Anatolian_Hieroglyphs Arabic Armenian Avestan Balinese Bamum Bassa_Vah Batak
Bengali Bhaiksuki Bopomofo Brahmi Braille Buginese Buhid Canadian_Aboriginal Carian
Caucasian_Albanian Chakma Cham Cherokee Chorasmian Common Coptic Cuneiform Cypriot
Cypro_Minoan Cyrillic Deseret Devanagari Dives_Akuru Dogra Duployan Egyptian_Hieroglyphs
Elbasan Elymaic Ethiopic Georgian Glagolitic Gothic Grantha Greek Gujarati Gunjala_Gondi
Gurmukhi Han Hangul Hanifi_Rohingya Hanunoo Hatran Hebrew Hiragana Imperial_Aramaic Inherited
Inscriptional_Pahlavi Inscriptional_Parthian Javanese Kaithi Kannada Katakana Kawi Kayah_Li
Kharoshthi Khitan_Small_Script Khmer Khojki Khudawadi Lao Latin Lepcha Limbu Linear_A
Linear_B Lisu Lycian Lydian Mahajani Makasar Malayalam Mandaic Manichaean Marchen
Masaram_Gondi Medefaidrin Meetei_Mayek Mende_Kikakui Meroitic_Cursive Meroitic_Hieroglyphs
Miao Modi Mongolian Mro Multani Myanmar Nabataean Nag_Mundari Nandinagari New_Tai_Lue Newa
Nko Nushu Nyiakeng_Puachue_Hmong Ogham Ol_Chiki Old_Hungarian Old_Italic Old_North_Arabian
Old_Permic Old_Persian Old_Sogdian Old_South_Arabian Old_Turkic Old_Uyghur Oriya Osage
Osmanya Pahawh_Hmong Palmyrene Pau_Cin_Hau Phags_Pa Phoenician Psalter_Pahlavi Rejang Runic
Samaritan Saurashtra Sharada Shavian Siddham SignWriting Sinhala Sogdian Sora_Sompeng
Soyombo Sundanese Syloti_Nagri Syriac Tagalog Tagbanwa Tai_Le Tai_Tham Tai_Viet Takri Tamil
Tangsa Tangut Telugu Thaana Thai Tibetan Tifinagh Tirhuta Toto Ugaritic Vai Vithkuqi Wancho
Warang_Citi Yezidi Yi Zanabazar_Square
""".split())


class _UnsupportedRegex(Exception):
    """Valid for Go's regexp, but beyond this implementation (Unicode script classes)."""


def _in_category(ch: str, name: str) -> bool:
    cat = unicodedata.category(ch)
    if cat == "Cn":
        return False
    return cat == name if len(name) == 2 else cat[0] == name


class _CharClass:
    """A set of characters: a union of items, possibly negated as a whole."""

    __slots__ = ("items", "negated")

    def __init__(self, items: list[tuple], negated: bool = False) -> None:
        # items: ("range", lo, hi) | ("table", ranges, negated) | ("cat", name, negated)
        self.items = items
        self.negated = negated

    def __contains__(self, ch: str) -> bool:
        cp = ord(ch)
        hit = False
        for item in self.items:
            if item[0] == "range":
                hit = item[1] <= cp <= item[2]
            elif item[0] == "table":
                hit = any(lo <= cp <= hi for lo, hi in item[1]) != item[2]
            else:
                hit = _in_category(ch, item[1]) != item[2]
            if hit:
                break
        return hit != self.negated


_ANY_NOT_NL = _CharClass([("range", 0x0A, 0x0A)], negated=True)


def _is_word(ch: str) -> bool:
    return ch.isascii() and (ch.isalnum() or ch == "_")


class _RegexParser:
    """Parses the RE2 syntax that Go's regexp.Compile accepts (syntax.Perl flags), into a
    small tree: ("lit", ch) ("class", _CharClass) ("assert", kind) ("cat", [..])
    ("alt", [..]) ("star"|"plus"|"quest", node) ("repeat", node, min, max)."""

    def __init__(self, src: str) -> None:
        self.s = src

    # -- escapes ----------------------------------------------------------------------

    def _escape(self, i: int) -> tuple[str, int]:
        """syntax.parseEscape at s[i] == '\\': (character, next index)."""
        s = self.s
        if i + 1 >= len(s):
            raise _RegexError("trailing backslash at end of expression")
        c = s[i + 1]
        j = i + 2
        if c.isascii() and not c.isalnum():
            return c, j  # escaped punctuation is itself
        if "1" <= c <= "7" and not (j < len(s) and "0" <= s[j] <= "7"):
            raise _RegexError("invalid escape sequence (backreference)")
        if "0" <= c <= "7":
            value = ord(c) - 0x30
            for _ in range(2):
                if j < len(s) and "0" <= s[j] <= "7":
                    value = value * 8 + ord(s[j]) - 0x30
                    j += 1
                else:
                    break
            return chr(value), j
        if c == "x":
            if j >= len(s):
                raise _RegexError("invalid escape sequence")
            if s[j] == "{":
                j += 1
                value, digits = 0, 0
                while True:
                    if j >= len(s):
                        raise _RegexError("invalid escape sequence")
                    d = s[j]
                    j += 1
                    if d == "}":
                        break
                    if d not in "0123456789abcdefABCDEF":
                        raise _RegexError("invalid escape sequence")
                    value = value * 16 + int(d, 16)
                    if value > _MAX_RUNE:
                        raise _RegexError("invalid escape sequence")
                    digits += 1
                if digits == 0:
                    raise _RegexError("invalid escape sequence")
                return chr(value), j
            pair = s[j:j + 2]
            if len(pair) == 2 and all(d in "0123456789abcdefABCDEF" for d in pair):
                return chr(int(pair, 16)), j + 2
            raise _RegexError("invalid escape sequence")
        simple = {"a": "\a", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
        if c in simple:
            return simple[c], j
        raise _RegexError("invalid escape sequence")

    def _unicode_class(self, i: int) -> tuple[tuple, int] | None:
        """\\pX, \\PX, \\p{Name}, \\p{^Name} at s[i]; None if not there."""
        s = self.s
        if not (s.startswith("\\p", i) or s.startswith("\\P", i)):
            return None
        negated = s[i + 1] == "P"
        j = i + 2
        if j < len(s) and s[j] == "{":
            end = s.find("}", i)
            if end < 0:
                raise _RegexError("invalid character class range")
            name, j = s[j + 1:end], end + 1
        else:
            name = s[j:j + 1]
            j += len(name)
        if name.startswith("^"):
            negated = not negated
            name = name[1:]
        if name == "Any":
            return ("range", 0, _MAX_RUNE) if not negated else ("table", (), False), j
        if name in _SCRIPT_NAMES:
            raise _UnsupportedRegex(f"Unicode script class \\p{{{name}}}")
        if name not in _CATEGORY_NAMES:
            raise _RegexError("invalid character class range")
        return ("cat", name, negated), j

    def _perl_class(self, i: int) -> tuple[tuple, int] | None:
        s = self.s
        if s.startswith("\\", i) and i + 1 < len(s) and s[i + 1] in _PERL_CLASSES:
            negated, table = _PERL_CLASSES[s[i + 1]]
            return ("table", table, negated), i + 2
        return None

    # -- classes ----------------------------------------------------------------------

    def _class_char(self, i: int) -> tuple[str, int]:
        s = self.s
        if i >= len(s):
            raise _RegexError("missing closing ]")
        if s[i] == "\\":
            return self._escape(i)
        return s[i], i + 1

    def _class(self, i: int) -> tuple[_CharClass, int]:
        """syntax.parseClass at s[i] == '['."""
        s = self.s
        i += 1
        negated = False
        if i < len(s) and s[i] == "^":
            negated = True
            i += 1
        items: list[tuple] = []
        first = True
        while i >= len(s) or s[i] != "]" or first:
            first = False
            if s.startswith("[:", i) and len(s) - i > 2:
                end = s.find(":]", i + 2)
                if end >= 0:
                    name = s[i + 2:end]
                    neg = name.startswith("^")
                    table = _POSIX_CLASSES.get(name[1:] if neg else name)
                    if table is None:
                        raise _RegexError("invalid character class range")
                    items.append(("table", table, neg))
                    i = end + 2
                    continue
            found = self._unicode_class(i) or self._perl_class(i)
            if found is not None:
                items.append(found[0])
                i = found[1]
                continue
            lo, i = self._class_char(i)
            hi = lo
            if i + 1 < len(s) and s[i] == "-" and s[i + 1] != "]":
                hi, i = self._class_char(i + 1)
                if hi < lo:
                    raise _RegexError("invalid character class range")
            items.append(("range", ord(lo), ord(hi)))
        return _CharClass(items, negated), i + 1

    # -- whole expression ---------------------------------------------------------------

    def parse(self) -> tuple:
        s = self.s
        groups: list[tuple[list[list[tuple]], int]] = []  # saved (alternatives) per open '('
        alts: list[list[tuple]] = [[]]
        last_repeat = False
        i = 0
        while i < len(s):
            c = s[i]
            repeat = False
            if c == "(":
                if s.startswith("(?", i):
                    raise _RegexError("flags and non-capturing groups are not expected here")
                groups.append((alts, i))
                alts = [[]]
                i += 1
            elif c == "|":
                alts.append([])
                i += 1
            elif c == ")":
                if not groups:
                    raise _RegexError("unexpected )")
                node = ("alt", [("cat", a) for a in alts])
                alts, _ = groups.pop()
                alts[-1].append(node)
                i += 1
            elif c == "^":
                alts[-1].append(("assert", "begin"))
                i += 1
            elif c == "$":
                alts[-1].append(("assert", "end"))
                i += 1
            elif c == ".":
                alts[-1].append(("class", _ANY_NOT_NL))
                i += 1
            elif c == "[":
                cls, i = self._class(i)
                alts[-1].append(("class", cls))
            elif c in "*+?":
                if last_repeat:
                    raise _RegexError("invalid nested repetition operator")
                if not alts[-1]:
                    raise _RegexError("missing argument to repetition operator")
                op = {"*": "star", "+": "plus", "?": "quest"}[c]
                alts[-1][-1] = (op, alts[-1][-1])
                i += 1
                if i < len(s) and s[i] == "?":
                    i += 1  # non-greedy: same language
                repeat = True
            elif c == "{":
                counted = self._counted(i)
                if counted is None:
                    alts[-1].append(("lit", "{"))  # not a valid {n,m}: a literal brace
                    i += 1
                else:
                    lo, hi, i = counted
                    if lo < 0 or lo > 1000 or hi > 1000 or (hi >= 0 and lo > hi):
                        raise _RegexError("invalid repeat count")
                    if last_repeat:
                        raise _RegexError("invalid nested repetition operator")
                    if not alts[-1]:
                        raise _RegexError("missing argument to repetition operator")
                    alts[-1][-1] = ("repeat", alts[-1][-1], lo, hi)
                    repeat = True
            elif c == "\\":
                i = self._backslash(i, alts[-1])
            else:
                alts[-1].append(("lit", c))
                i += 1
            last_repeat = repeat
        if groups:
            raise _RegexError("missing closing )")
        return ("alt", [("cat", a) for a in alts])

    def _int(self, i: int) -> tuple[int, int] | None:
        """syntax.parseInt: decimal digits at s[i], no leading zero; -1 if too big."""
        s = self.s
        j = i
        while j < len(s) and "0" <= s[j] <= "9":
            j += 1
        if j == i or (j - i >= 2 and s[i] == "0"):
            return None
        digits = s[i:j]
        return (int(digits) if len(digits) <= 9 else -1), j

    def _counted(self, i: int) -> tuple[int, int, int] | None:
        """syntax.parseRepeat at s[i] == '{': (min, max, next index); max -1 = no max."""
        s = self.s
        found = self._int(i + 1)
        if found is None:
            return None
        lo, j = found
        if j >= len(s):
            return None
        if s[j] != ",":
            hi = lo
        else:
            j += 1
            if j >= len(s):
                return None
            if s[j] == "}":
                hi = -1
            else:
                found = self._int(j)
                if found is None:
                    return None
                hi, j = found
                if hi < 0:
                    lo = -1
        if j >= len(s) or s[j] != "}":
            return None
        return lo, hi, j + 1

    def _backslash(self, i: int, seq: list[tuple]) -> int:
        s = self.s
        if i + 1 < len(s):
            c = s[i + 1]
            if c == "A":
                seq.append(("assert", "begin"))
                return i + 2
            if c == "z":
                seq.append(("assert", "end"))
                return i + 2
            if c == "b":
                seq.append(("assert", "word"))
                return i + 2
            if c == "B":
                seq.append(("assert", "notword"))
                return i + 2
            if c == "C":
                raise _RegexError("invalid escape sequence: \\C")
            if c == "Q":
                end = s.find("\\E", i + 2)
                literal = s[i + 2:] if end < 0 else s[i + 2:end]
                seq.extend(("lit", ch) for ch in literal)
                return len(s) if end < 0 else end + 2
        found = self._unicode_class(i) or self._perl_class(i)
        if found is not None:
            seq.append(("class", _CharClass([found[0]])))
            return found[1]
        ch, j = self._escape(i)
        seq.append(("lit", ch))
        return j


_CHAR, _SPLIT, _ASSERT, _MATCH = 0, 1, 2, 3
_BEGIN, _WORD, _OTHER = 0, 1, 2  # what precedes the current position
_MAX_DFA_STATES = 2000


class _DState:
    """A DFA state: the NFA nodes pending closure, and the kind of character before."""

    __slots__ = ("ids", "prev", "trans", "end")

    def __init__(self, ids: frozenset[int], prev: int, end: bool | None = None) -> None:
        self.ids = ids
        self.prev = prev
        self.trans: dict[str, _DState] = {}
        self.end = end  # does the text match if it ends here (None: not computed yet)


# absorbing states: a match was found / no match is possible any more
_ACCEPT = _DState(frozenset(), _OTHER, end=True)
_DEAD = _DState(frozenset(), _OTHER, end=False)


class _GoRegexp:
    """A compiled Go regexp: Thompson NFA, run as a DFA built on demand (linear time).

    ``search(text)`` answers Go's ``MatchString``: is there a match anywhere in text.
    """

    def __init__(self, source: str) -> None:
        tree = _RegexParser(source).parse()
        self.kind: list[int] = []
        self.arg: list[object] = []
        self.out1: list[int] = []
        self.out2: list[int] = []
        self.words = False
        match = self._node(_MATCH, None, -1, -1)
        self.start = self._build(tree, match)
        self.anchored = self._starts_anchored(tree)
        self.initial = _DState(frozenset([self.start]), _BEGIN)
        self.states: dict[tuple[frozenset[int], int], _DState] = {
            (self.initial.ids, _BEGIN): self.initial
        }

    def _node(self, kind: int, arg: object, out1: int, out2: int) -> int:
        self.kind.append(kind)
        self.arg.append(arg)
        self.out1.append(out1)
        self.out2.append(out2)
        return len(self.kind) - 1

    def _build(self, node: tuple, nxt: int) -> int:
        op = node[0]
        if op == "lit":
            return self._node(_CHAR, _CharClass([("range", ord(node[1]), ord(node[1]))]), nxt, -1)
        if op == "class":
            return self._node(_CHAR, node[1], nxt, -1)
        if op == "assert":
            if node[1] in ("word", "notword"):
                self.words = True
            return self._node(_ASSERT, node[1], nxt, -1)
        if op == "cat":
            for sub in reversed(node[1]):
                nxt = self._build(sub, nxt)
            return nxt
        if op == "alt":
            starts = [self._build(sub, nxt) for sub in node[1]]
            first = starts[-1]
            for s in reversed(starts[:-1]):
                first = self._node(_SPLIT, None, s, first)
            return first
        if op == "quest":
            return self._node(_SPLIT, None, self._build(node[1], nxt), nxt)
        if op == "repeat":
            _, sub, lo, hi = node
            if hi < 0:  # x{n,} = n copies, then x*
                nxt = self._build(("star", sub), nxt)
            else:  # x{n,m} = n copies, then m-n optional ones
                for _ in range(hi - lo):
                    nxt = self._build(("quest", sub), nxt)
            for _ in range(lo):
                nxt = self._build(sub, nxt)
            return nxt
        # star / plus: a split that loops back through the body
        split = self._node(_SPLIT, None, -1, nxt)
        body = self._build(node[1], split)
        self.out1[split] = body
        return split if op == "star" else body

    @staticmethod
    def _starts_anchored(tree: tuple) -> bool:
        node = tree
        while True:
            if node[0] == "alt" and len(node[1]) == 1:
                node = node[1][0]
            elif node[0] == "cat" and node[1]:
                node = node[1][0]
            else:
                return node == ("assert", "begin")

    def _state(self, ids: frozenset[int], prev: int) -> _DState:
        key = (ids, prev)
        state = self.states.get(key)
        if state is None:
            if len(self.states) >= _MAX_DFA_STATES:
                # Bound memory: drop the whole cached automaton (reachable from the
                # initial state), and rebuild on demand. Each step costs at most one
                # closure over the NFA, so matching stays linear.
                self.states = {}
                self.initial = _DState(frozenset([self.start]), _BEGIN)
                self.states[(self.initial.ids, _BEGIN)] = self.initial
            state = self.states[key] = _DState(ids, prev)
        return state

    def _closure(self, ids: frozenset[int], prev: int, nxt: str | None) -> tuple[list[int], bool]:
        """Character nodes reachable without input, and whether MATCH is reachable."""
        at_begin = prev == _BEGIN
        prev_word = prev == _WORD
        next_word = nxt is not None and _is_word(nxt)
        seen: set[int] = set()
        stack = list(ids)
        chars: list[int] = []
        matched = False
        kind, arg, out1, out2 = self.kind, self.arg, self.out1, self.out2
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            k = kind[n]
            if k == _CHAR:
                chars.append(n)
            elif k == _SPLIT:
                stack.append(out1[n])
                stack.append(out2[n])
            elif k == _ASSERT:
                a = arg[n]
                if a == "begin":
                    ok = at_begin
                elif a == "end":
                    ok = nxt is None
                elif a == "word":
                    ok = prev_word != next_word
                else:
                    ok = prev_word == next_word
                if ok:
                    stack.append(out1[n])
            else:
                matched = True
        return chars, matched

    def _step(self, state: _DState, ch: str) -> _DState:
        if state is _ACCEPT or state is _DEAD:
            state.trans[ch] = state  # shared by all regexps: absorbing whatever the regexp
            return state
        chars, matched = self._closure(state.ids, state.prev, ch)
        if matched:
            result = _ACCEPT
        else:
            targets = {self.out1[n] for n in chars if ch in self.arg[n]}  # type: ignore[operator]
            if not self.anchored:
                targets.add(self.start)
            if targets:
                prev = (_WORD if _is_word(ch) else _OTHER) if self.words else _OTHER
                result = self._state(frozenset(targets), prev)
            else:
                result = _DEAD
        state.trans[ch] = result
        return result

    def search(self, text: str) -> bool:
        state = self.initial
        step = self._step
        for ch in text:
            # _ACCEPT and _DEAD are absorbing: cheaper than testing for them each time
            state = state.trans.get(ch) or step(state, ch)
        if state.end is None:
            state.end = self._closure(state.ids, state.prev, None)[1]
        return state.end


_BAD_BYTES = {cp: "\ufffd" for cp in range(0xDC80, 0xDD00)}


# --------------------------------------------------------------------------------------
# patternmatcher
# --------------------------------------------------------------------------------------

class _Pattern:
    __slots__ = ("text", "dirs", "exclusion", "kind", "literal", "regexp", "error")

    def __init__(self, text: str, exclusion: bool) -> None:
        self.text = text  # cleaned, without the '!'
        self.dirs = text.split("/")
        self.exclusion = exclusion
        self.kind: str | None = None  # compiled lazily, as upstream does
        self.literal: str | bytes = ""  # the prefix or suffix to compare with
        self.regexp: _GoRegexp | None = None
        self.error = False

    def _compile(self) -> None:
        kind, source = _translate(self.text)
        if kind == REGEXP:
            assert source is not None
            try:
                self.regexp = _GoRegexp(source)
            except _RegexError:
                self.error = True  # upstream: every later match() fails again
                return
            except _UnsupportedRegex as e:
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
            p = _trim_space(raw)
            if not p:
                continue
            p = _clean(p)
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
        path = _clean(path)
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


# --------------------------------------------------------------------------------------
# Finding the ignore file, walking the context
# --------------------------------------------------------------------------------------

def load_context_ignore(context_dir: Path, dockerfile: Path | None) -> PatternMatcher | None:
    """The ignore rules BuildKit applies to a build context.

    ``<Dockerfile>.dockerignore`` next to the Dockerfile wins (even when empty); else
    ``CONTEXT/.dockerignore``; ``None`` when neither file exists.
    """
    candidates = []
    if dockerfile is not None:
        dockerfile = Path(dockerfile)
        candidates.append(dockerfile.with_name(dockerfile.name + DOCKERIGNORE))
    candidates.append(Path(context_dir) / DOCKERIGNORE)
    for candidate in candidates:
        try:
            data = candidate.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            continue
        except OSError as e:
            raise ContextError(f"failed to read {candidate}: {e.strerror or e}") from e
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
    start = _clean("/" + start.replace(os.sep, "/"))[1:]

    info: MatchInfo | None = None
    # (path, stat, listed?) for ignored directories on the current path
    pending: list[list] = []

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
