"""Go's regexp syntax (RE2, syntax.Perl flags), as far as .dockerignore patterns reach it,
parsed into a small tree that :mod:`distill.ignore.goregexp` compiles and runs: the split
Go makes between ``regexp/syntax`` and ``regexp``.

A tree node is a tuple ``(kind, operands...)``; character classes are :class:`CharClass`
values built from the Unicode and POSIX class tables below."""

from __future__ import annotations

import unicodedata
from typing import Any, TypeAlias

__all__ = ["CharClass", "ClassItem", "Node", "Parser", "RegexError", "UnsupportedRegex",
           "is_word"]


class RegexError(Exception):
    """Go's regexp.Compile would fail (patternmatcher turns this into ErrBadPattern)."""


_MAX_RUNE = 0x10FFFF

#: an item of a character class: ("range", lo, hi), ("table", ranges, negated) or
#: ("cat", category, negated)
ClassItem: TypeAlias = tuple[Any, ...]
#: the zero-width escapes \A, \z, \b and \B
_ASSERTIONS = {"A": "begin", "z": "end", "b": "word", "B": "notword"}
#: a node of a parsed expression: (kind, operands...), as _Parser.parse builds them
Node: TypeAlias = tuple[Any, ...]


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
    ["C", "Cc", "Cf", "Co", "Cs", "L", "Ll", "Lm", "Lo", "Lt", "Lu", "M", "Mc", "Me", "Mn", "N", "Nd", "Nl", "No", "P", "Pc", "Pd", "Pe", "Pf", "Pi", "Po", "Ps", "S", "Sc", "Sk", "Sm", "So", "Z", "Zl", "Zp", "Zs"]
)


# Go's unicode.Scripts (Unicode 15, as in the Go that builds BuildKit). Python has no
# script data, so \p{Greek} and the like are recognised, and refused as unsupported.
_SCRIPT_NAMES = frozenset(["Adlam", "Ahom", "Anatolian_Hieroglyphs", "Arabic", "Armenian", "Avestan", "Balinese", "Bamum", "Bassa_Vah", "Batak", "Bengali", "Bhaiksuki", "Bopomofo", "Brahmi", "Braille", "Buginese", "Buhid", "Canadian_Aboriginal", "Carian", "Caucasian_Albanian", "Chakma", "Cham", "Cherokee", "Chorasmian", "Common", "Coptic", "Cuneiform", "Cypriot", "Cypro_Minoan", "Cyrillic", "Deseret", "Devanagari", "Dives_Akuru", "Dogra", "Duployan", "Egyptian_Hieroglyphs", "Elbasan", "Elymaic", "Ethiopic", "Georgian", "Glagolitic", "Gothic", "Grantha", "Greek", "Gujarati", "Gunjala_Gondi", "Gurmukhi", "Han", "Hangul", "Hanifi_Rohingya", "Hanunoo", "Hatran", "Hebrew", "Hiragana", "Imperial_Aramaic", "Inherited", "Inscriptional_Pahlavi", "Inscriptional_Parthian", "Javanese", "Kaithi", "Kannada", "Katakana", "Kawi", "Kayah_Li", "Kharoshthi", "Khitan_Small_Script", "Khmer", "Khojki", "Khudawadi", "Lao", "Latin", "Lepcha", "Limbu", "Linear_A", "Linear_B", "Lisu", "Lycian", "Lydian", "Mahajani", "Makasar", "Malayalam", "Mandaic", "Manichaean", "Marchen", "Masaram_Gondi", "Medefaidrin", "Meetei_Mayek", "Mende_Kikakui", "Meroitic_Cursive", "Meroitic_Hieroglyphs", "Miao", "Modi", "Mongolian", "Mro", "Multani", "Myanmar", "Nabataean", "Nag_Mundari", "Nandinagari", "New_Tai_Lue", "Newa", "Nko", "Nushu", "Nyiakeng_Puachue_Hmong", "Ogham", "Ol_Chiki", "Old_Hungarian", "Old_Italic", "Old_North_Arabian", "Old_Permic", "Old_Persian", "Old_Sogdian", "Old_South_Arabian", "Old_Turkic", "Old_Uyghur", "Oriya", "Osage", "Osmanya", "Pahawh_Hmong", "Palmyrene", "Pau_Cin_Hau", "Phags_Pa", "Phoenician", "Psalter_Pahlavi", "Rejang", "Runic", "Samaritan", "Saurashtra", "Sharada", "Shavian", "Siddham", "SignWriting", "Sinhala", "Sogdian", "Sora_Sompeng", "Soyombo", "Sundanese", "Syloti_Nagri", "Syriac", "Tagalog", "Tagbanwa", "Tai_Le", "Tai_Tham", "Tai_Viet", "Takri", "Tamil", "Tangsa", "Tangut", "Telugu", "Thaana", "Thai", "Tibetan", "Tifinagh", "Tirhuta", "Toto", "Ugaritic", "Vai", "Vithkuqi", "Wancho", "Warang_Citi", "Yezidi", "Yi", "Zanabazar_Square"])


class UnsupportedRegex(Exception):
    """Valid for Go's regexp, but beyond this implementation (Unicode script classes)."""


def _in_category(ch: str, name: str) -> bool:
    cat = unicodedata.category(ch)
    if cat == "Cn":
        return False
    return cat == name if len(name) == 2 else cat[0] == name


class CharClass:
    """A set of characters: a union of items, possibly negated as a whole."""

    __slots__ = ("items", "negated")

    def __init__(self, items: list[ClassItem], negated: bool = False) -> None:
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


_ANY_NOT_NL = CharClass([("range", 0x0A, 0x0A)], negated=True)


def is_word(ch: str) -> bool:
    return ch.isascii() and (ch.isalnum() or ch == "_")


class Parser:
    """Parses the RE2 syntax that Go's regexp.Compile accepts (syntax.Perl flags), into a
    small tree: ("lit", ch) ("class", CharClass) ("assert", kind) ("cat", [..])
    ("alt", [..]) ("star"|"plus"|"quest", node) ("repeat", node, min, max)."""

    def __init__(self, src: str) -> None:
        self.s = src

    # -- escapes ----------------------------------------------------------------------

    def _escape(self, i: int) -> tuple[str, int]:
        """syntax.parseEscape at s[i] == '\\': (character, next index)."""
        s = self.s
        if i + 1 >= len(s):
            raise RegexError("trailing backslash at end of expression")
        c = s[i + 1]
        j = i + 2
        if c.isascii() and not c.isalnum():
            return c, j  # escaped punctuation is itself
        if "1" <= c <= "7" and not (j < len(s) and "0" <= s[j] <= "7"):
            raise RegexError("invalid escape sequence (backreference)")
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
                raise RegexError("invalid escape sequence")
            if s[j] == "{":
                j += 1
                value, digits = 0, 0
                while True:
                    if j >= len(s):
                        raise RegexError("invalid escape sequence")
                    d = s[j]
                    j += 1
                    if d == "}":
                        break
                    if d not in "0123456789abcdefABCDEF":
                        raise RegexError("invalid escape sequence")
                    value = value * 16 + int(d, 16)
                    if value > _MAX_RUNE:
                        raise RegexError("invalid escape sequence")
                    digits += 1
                if digits == 0:
                    raise RegexError("invalid escape sequence")
                return chr(value), j
            pair = s[j:j + 2]
            if len(pair) == 2 and all(d in "0123456789abcdefABCDEF" for d in pair):
                return chr(int(pair, 16)), j + 2
            raise RegexError("invalid escape sequence")
        simple = {"a": "\a", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
        if c in simple:
            return simple[c], j
        raise RegexError("invalid escape sequence")

    def _unicode_class(self, i: int) -> tuple[ClassItem, int] | None:
        """\\pX, \\PX, \\p{Name}, \\p{^Name} at s[i]; None if not there."""
        s = self.s
        if not (s.startswith("\\p", i) or s.startswith("\\P", i)):
            return None
        negated = s[i + 1] == "P"
        j = i + 2
        if j < len(s) and s[j] == "{":
            end = s.find("}", i)
            if end < 0:
                raise RegexError("invalid character class range")
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
            raise UnsupportedRegex(f"Unicode script class \\p{{{name}}}")
        if name not in _CATEGORY_NAMES:
            raise RegexError("invalid character class range")
        return ("cat", name, negated), j

    def _perl_class(self, i: int) -> tuple[ClassItem, int] | None:
        s = self.s
        if s.startswith("\\", i) and i + 1 < len(s) and s[i + 1] in _PERL_CLASSES:
            negated, table = _PERL_CLASSES[s[i + 1]]
            return ("table", table, negated), i + 2
        return None

    # -- classes ----------------------------------------------------------------------

    def _class_char(self, i: int) -> tuple[str, int]:
        s = self.s
        if i >= len(s):
            raise RegexError("missing closing ]")
        if s[i] == "\\":
            return self._escape(i)
        return s[i], i + 1

    def _class(self, i: int) -> tuple[CharClass, int]:
        """syntax.parseClass at s[i] == '['."""
        s = self.s
        i += 1
        negated = False
        if i < len(s) and s[i] == "^":
            negated = True
            i += 1
        items: list[ClassItem] = []
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
                        raise RegexError("invalid character class range")
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
                    raise RegexError("invalid character class range")
            items.append(("range", ord(lo), ord(hi)))
        return CharClass(items, negated), i + 1

    # -- whole expression ---------------------------------------------------------------

    def parse(self) -> Node:
        s = self.s
        groups: list[tuple[list[list[Node]], int]] = []  # saved (alternatives) per open '('
        alts: list[list[Node]] = [[]]
        last_repeat = False
        i = 0
        while i < len(s):
            c = s[i]
            repeat = False
            if c == "(":
                if s.startswith("(?", i):
                    raise RegexError("flags and non-capturing groups are not expected here")
                groups.append((alts, i))
                alts = [[]]
                i += 1
            elif c == "|":
                alts.append([])
                i += 1
            elif c == ")":
                if not groups:
                    raise RegexError("unexpected )")
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
                    raise RegexError("invalid nested repetition operator")
                if not alts[-1]:
                    raise RegexError("missing argument to repetition operator")
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
                        raise RegexError("invalid repeat count")
                    if last_repeat:
                        raise RegexError("invalid nested repetition operator")
                    if not alts[-1]:
                        raise RegexError("missing argument to repetition operator")
                    alts[-1][-1] = ("repeat", alts[-1][-1], lo, hi)
                    repeat = True
            elif c == "\\":
                i = self._backslash(i, alts[-1])
            else:
                alts[-1].append(("lit", c))
                i += 1
            last_repeat = repeat
        if groups:
            raise RegexError("missing closing )")
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

    def _backslash(self, i: int, seq: list[Node]) -> int:
        s = self.s
        if i + 1 < len(s):
            c = s[i + 1]
            if c in _ASSERTIONS:
                seq.append(("assert", _ASSERTIONS[c]))
                return i + 2
            if c == "C":
                raise RegexError("invalid escape sequence: \\C")
            if c == "Q":
                end = s.find("\\E", i + 2)
                literal = s[i + 2:] if end < 0 else s[i + 2:end]
                seq.extend(("lit", ch) for ch in literal)
                return len(s) if end < 0 else end + 2
        found = self._unicode_class(i) or self._perl_class(i)
        if found is not None:
            seq.append(("class", CharClass([found[0]])))
            return found[1]
        ch, j = self._escape(i)
        seq.append(("lit", ch))
        return j
