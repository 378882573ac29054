"""Dockerfile word expansion, compatible with BuildKit's ``frontend/dockerfile/shell``.

:class:`Lexer` removes quotes, processes escapes, expands ``$VAR`` / ``${VAR...}`` and
(``process_words``) splits fields. BuildKit quirks it keeps on purpose: inside double
quotes the escape character only escapes ``"``, ``$`` and itself; ``#``/``%``/``/``
patterns know ``*`` and ``?`` (never across a newline) and ``\\`` may only escape ``*``,
``?``, ``\\``, ``}``, ``/``; ``${V//p/r}`` expands ``$0``/``${0}``/``$$`` in ``r`` (Go's
``ReplaceAllString``) but ``${V/p/r}`` does not; in ``process_words`` a nested
``${V:-word}`` discards the field text before it (``hello${X:-a}`` -> ``["a"]``: one
field buffer is shared by all nesting levels); a leading byte-order mark is ignored.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from distill.errors import ShellExpansionError

__all__ = ["Lexer", "ShellResult", "env_list_to_dict"]

_EOF = ""  # what _peek/_next return at the end (test it with ==, never with `in "..."`)
_BOM = "\ufeff"
_SPECIAL_PARAMS = frozenset("@*#?-$!0")
_WORD_OPS = frozenset("+-?#%")
_NAME_CATEGORIES = frozenset(["Lu", "Ll", "Lt", "Lm", "Lo", "Nd"])
# Go's unicode.IsSpace: the Unicode White_Space property.
_SPACES = frozenset("\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | frozenset(
    chr(c) for c in range(0x2000, 0x200B)
)
_HEREDOC_BLANKS = frozenset("\t\r ")
_UNEXPECTED_END = "unexpected end of statement while looking for matching "
_MISSING_BRACE = "syntax error: missing '}'"
_ESCAPE_PAIR_OR_CHAR = re.compile(r"\\.|.", re.DOTALL)
_MAX_DEPTH = 100  # ${...} nesting; deeper input fails instead of overflowing the stack


def env_list_to_dict(items: Iterable[str]) -> dict[str, str]:
    """Turn ``["NAME=value", ...]`` into a dict: split at the first ``=``, a bare ``NAME``
    is set to ``""``, the last entry for a name wins."""
    env: dict[str, str] = {}
    for item in items:
        name, _, value = item.partition("=")
        env[name] = value
    return env


def _is_digit(ch: str) -> bool:
    """Go's ``unicode.IsDigit``: a decimal digit of any script."""
    return unicodedata.category(ch) == "Nd"


def _is_name_char(ch: str) -> bool:
    """Go's ``unicode.IsLetter(ch) || unicode.IsDigit(ch) || ch == '_'``."""
    return ch == "_" or unicodedata.category(ch) in _NAME_CATEGORIES


@dataclass
class ShellResult:
    """One expansion: the joined result, the split fields, and the names looked up and
    found (``matched``, even if set to ``""``) or not found (``unmatched``)."""

    result: str
    words: list[str]
    matched: set[str] = field(default_factory=set)
    unmatched: set[str] = field(default_factory=set)


class Lexer:
    """Expands Dockerfile words the way BuildKit's ``shell.Lex`` does.

    ``escape`` is the Dockerfile escape character (``\\`` or a backtick). The flags are
    BuildKit's ``RawQuotes`` (keep quote characters), ``RawEscapes`` (keep escape
    characters), ``SkipProcessQuotes`` (quotes are plain text) and ``SkipUnsetEnv`` (leave
    references to unset variables as written). A Lexer keeps no state between calls.
    """

    def __init__(self, escape: str = "\\", *, raw_quotes: bool = False,
                 raw_escapes: bool = False, skip_process_quotes: bool = False,
                 skip_unset_env: bool = False) -> None:  # fmt: skip
        if len(escape) != 1:
            raise ValueError(f"escape must be a single character, not {escape!r}")
        self.escape = escape
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_process_quotes = skip_process_quotes
        self.skip_unset_env = skip_unset_env

    def process(self, word: str, env: Mapping[str, str]) -> ShellResult:
        """Expand ``word`` once; raises :class:`ShellExpansionError` on bad input."""
        run = _Run(self, word, env)
        try:
            result, words = run.process_until(_EOF, self.raw_escapes)
        except (ShellExpansionError, RecursionError) as exc:
            reason = exc.message if isinstance(exc, ShellExpansionError) else "nested too deeply"
            quoted = json.dumps(word, ensure_ascii=False)
            raise ShellExpansionError(f"failed to process {quoted}: {reason}") from None
        return ShellResult(result, words, run.matched, run.unmatched)

    def process_word(self, word: str, env: Mapping[str, str]) -> str:
        """Expand ``word`` into one string (quotes removed, no field splitting)."""
        return self.process(word, env).result

    def process_words(self, word: str, env: Mapping[str, str]) -> list[str]:
        """Expand ``word`` and split it into fields at unquoted whitespace."""
        return self.process(word, env).words

    def process_word_with_matches(
        self, word: str, env: Mapping[str, str]
    ) -> tuple[str, set[str], set[str]]:
        """Like :meth:`process_word`, plus the names found and not found in ``env``."""
        res = self.process(word, env)
        return res.result, res.matched, res.unmatched


class _Fields:
    """Collects split fields. ``buf`` is shared by every nesting level of one run (as in
    BuildKit), so a nested word clears what the enclosing level had collected."""

    def __init__(self, buf: list[str]) -> None:
        self.buf = buf
        buf.clear()
        self.words: list[str] = []

    def add_split(self, text: str) -> None:
        """Add unquoted text: whitespace ends the current field."""
        for ch in text:
            if ch in _SPACES:
                self._flush()
            else:
                self.buf.append(ch)

    def add_raw(self, text: str) -> None:
        """Add quoted or escaped text, kept whole."""
        if text:
            self.buf.append(text)

    def finish(self) -> list[str]:
        self._flush()
        return self.words

    def _flush(self) -> None:
        if self.buf:
            self.words.append("".join(self.buf))
            self.buf.clear()


class _Run:
    """The state of one expansion: a cursor over the word, plus what was looked up."""

    def __init__(self, lexer: Lexer, text: str, env: Mapping[str, str]) -> None:
        self.lex = lexer
        self.text = text
        self.pos = 1 if text.startswith(_BOM) else 0
        self.env = env
        self.raw_escapes = lexer.raw_escapes
        self.matched: set[str] = set()
        self.unmatched: set[str] = set()
        self.fields_buf: list[str] = []
        self.depth = 0
        self.handlers: dict[str, Callable[[], str]] = {"<": self._possible_heredoc}
        if not lexer.skip_process_quotes:
            self.handlers.update({"'": self._single_quoted, '"': self._double_quoted})

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else _EOF

    def _next(self) -> str:
        ch = self._peek()
        self.pos += ch != _EOF
        return ch

    def lookup(self, name: str) -> tuple[str, bool]:
        """The value of ``name`` and whether it is set; records the look-up."""
        if name in self.env:
            self.matched.add(name)
            return self.env[name], True
        self.unmatched.add(name)
        return "", False

    def process_until(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        """Process up to and including ``stop`` (``_EOF``: the end of the input) and
        return the text and its fields. Running out of input before ``stop`` fails."""
        if self.depth >= _MAX_DEPTH:
            raise ShellExpansionError("substitutions nested too deeply")
        saved, self.raw_escapes = self.raw_escapes, raw_escapes
        self.depth += 1
        try:
            return self._scan(stop)
        finally:
            self.raw_escapes = saved
            self.depth -= 1

    def _scan(self, stop: str) -> tuple[str, list[str]]:
        out: list[str] = []
        fields = _Fields(self.fields_buf)
        esc = self.lex.escape
        while (ch := self._peek()) != _EOF:
            if stop and ch == stop:
                self.pos += 1
                return "".join(out), fields.finish()
            if ch == "$":
                out.append(text := self._dollar())
                fields.add_split(text)
            elif handler := self.handlers.get(ch):
                out.append(text := handler())
                fields.add_raw(text)
            elif ch != esc:
                self.pos += 1
                out.append(ch)
                fields.add_split(ch)
            else:
                self.pos += 1
                if self.raw_escapes:
                    out.append(ch)
                    fields.add_raw(ch)
                ch = self._next()
                if ch == _EOF:  # an escape at the very end is dropped
                    break
                out.append(ch)
                fields.add_raw(ch)
        if stop:
            raise ShellExpansionError(_UNEXPECTED_END + stop)
        return "".join(out), fields.finish()

    def _single_quoted(self) -> str:
        """Everything up to the next single quote, taken literally."""
        end = self.text.find("'", self.pos + 1)
        if end < 0:
            raise ShellExpansionError(_UNEXPECTED_END + "single-quote")
        start, self.pos = self.pos, end + 1
        return self.text[start : end + 1] if self.lex.raw_quotes else self.text[start + 1 : end]

    def _double_quoted(self) -> str:
        """Up to the next unescaped double quote, expanding ``$``; the escape character
        only escapes ``"``, ``$`` and itself, before anything else it stays."""
        esc = self.lex.escape
        quote = self._next()
        out = [quote] if self.lex.raw_quotes else []
        while (ch := self._peek()) != '"':
            if ch == _EOF:
                raise ShellExpansionError(_UNEXPECTED_END + "double-quote")
            if ch == "$":
                out.append(self._dollar())
                continue
            self.pos += 1
            if ch == esc:
                if self.raw_escapes:
                    out.append(ch)
                after = self._peek()
                if after == _EOF:
                    continue  # fails on the next turn
                if after in ('"', "$", esc):
                    ch = self._next()
            out.append(ch)
        self.pos += 1
        if self.lex.raw_quotes:
            out.append(ch)
        return "".join(out)

    def _possible_heredoc(self) -> str:
        """``<`` is plain text, but ``<<`` keeps the blanks after it in the same field."""
        start = self.pos
        self.pos += 1
        if self._peek() == "<":
            self.pos += 1
            while self._peek() in _HEREDOC_BLANKS:
                self.pos += 1
        return self.text[start : self.pos]

    def _name(self) -> str:
        """A variable name: letters/digits/underscores, all digits, or one special char."""
        start = self.pos
        first = self._peek()
        if first == _EOF:
            return ""
        if first in _SPECIAL_PARAMS and not _is_digit(first):
            self.pos += 1
            return first
        accept = _is_digit if _is_digit(first) else _is_name_char
        while (ch := self._peek()) != _EOF and accept(ch):
            self.pos += 1
        return self.text[start : self.pos]

    def _nested(self, stop: str, raw_escapes: bool, eof_message: str) -> str:
        """Process the word of a ``${...}`` operator, up to ``stop``."""
        try:
            return self.process_until(stop, raw_escapes)[0]
        except ShellExpansionError:
            if self._peek() == _EOF:
                raise ShellExpansionError(eof_message) from None
            raise

    def _dollar(self) -> str:
        """Expand the ``$...`` at the cursor."""
        self.pos += 1
        skip_unset = self.lex.skip_unset_env
        if self._peek() != "{":
            name = self._name()
            if not name:
                return "$"
            value, found = self.lookup(name)
            return "$" + name if skip_unset and not found else value
        self.pos += 1
        ch = self._peek()
        if ch == _EOF:
            raise ShellExpansionError(_MISSING_BRACE)
        if ch in ("{", "}", ":"):
            raise ShellExpansionError("syntax error: bad substitution")
        name = self._name()
        op = ch = self._next()
        if ch == "}":
            value, found = self.lookup(name)
            return "${" + name + "}" if skip_unset and not found else value
        if ch == "/":
            return self._replace(name)
        colon = ch == ":"
        if colon:
            ch = self._next()
            op += ch
        pattern_op = ch in ("#", "%")
        if not (colon or ch in _WORD_OPS) or (colon and pattern_op):
            raise ShellExpansionError(f"unsupported modifier ({op}) in substitution")
        word = self._nested("}", pattern_op, _MISSING_BRACE)
        value, found = self.lookup(name)
        if skip_unset and not found:
            return f"${{{name}{op}{word}}}"
        missing = not found or (colon and value == "")
        if ch == "-":
            return word if missing else value
        if ch == "+":
            return "" if missing else word
        if ch == "?":
            if missing:
                why = "is not allowed to be " + ("unset" if not found else "empty")
                raise ShellExpansionError(f"{name}: {word or why}")
            return value
        if pattern_op:
            longest = word.startswith(ch)
            word = word[longest:]
            if ch == "#":
                return _trim_prefix(word, value, longest)
            return _trim_prefix(_reverse_pattern(word), value[::-1], longest)[::-1]
        raise ShellExpansionError(f"unsupported modifier ({op}) in substitution")

    def _replace(self, name: str) -> str:
        """``${VAR/pat/repl}`` (first match) and ``${VAR//pat/repl}`` (every match)."""
        every = self._peek() == "/"
        self.pos += every
        pattern = self._nested("/", True, "syntax error: missing '/' in ${}")
        repl = self._nested("}", True, _MISSING_BRACE)
        value, found = self.lookup(name)
        if self.lex.skip_unset_env and not found:
            return f"${{{name}/{pattern}/{repl}}}"
        ends = _Glob(pattern, greedy=True).match_ends(value)
        starts: list[int | None] = [None] * (len(ends) + 1)  # next match start at/after i
        for i in range(len(ends) - 1, -1, -1):
            starts[i] = i if ends[i] is not None else starts[i + 1]
        out: list[str] = []
        last = pos = 0
        while pos <= len(value) and (start := starts[pos]) is not None:
            end: int = ends[start]  # type: ignore[assignment]
            out.append(value[last:start])
            if not every:
                out.append(repl)
                last = end
                break
            if end > last or start == 0:  # no empty match right after a match (Go)
                out.append(_expand_template(repl, value[start:end]))
            last = end
            pos = max(pos + 1, end)
        out.append(value[last:])
        return "".join(out)


_STAR, _ANY, _LIT = 0, 1, 2


class _Glob:
    """A ``*`` / ``?`` pattern matched with Go regexp leftmost-first semantics, in
    O(len(pattern) * len(text)) time (no backtracking blow-up)."""

    def __init__(self, pattern: str, greedy: bool) -> None:
        self.greedy = greedy
        self.tokens: list[tuple[int, str]] = []
        chars = pattern[1:] if pattern.startswith(_BOM) else pattern
        i = 0
        while i < len(chars):
            ch, i = chars[i], i + 1
            if ch == "*" or ch == "?":
                self.tokens.append((_STAR if ch == "*" else _ANY, ""))
            elif ch != "\\":
                self.tokens.append((_LIT, ch))
            elif (after := chars[i : i + 1]) in ("*", "?", "\\"):
                self.tokens.append((_LIT, after))
                i += 1
            elif after not in ("}", "/"):  # an escaped } or / is just that character
                raise ShellExpansionError(
                    f"invalid pattern ({pattern}) in substitution: invalid escape '\\{after}'"
                )

    def match_ends(self, text: str) -> list[int | None]:
        """For each start offset, where the preferred match starting there ends (or None).

        Computed backwards over the tokens: ``after[i]`` is where the rest of the pattern,
        started at ``i``, ends; a star picks the longest (greedy) or shortest run of
        non-newline characters for which the rest matches."""
        n = len(text)
        after: list[int | None] = list(range(n + 1))
        for kind, lit in reversed(self.tokens):
            here: list[int | None] = [None] * (n + 1)
            if kind == _LIT or kind == _ANY:
                for i in range(n):
                    if (text[i] == lit) if kind == _LIT else (text[i] != "\n"):
                        here[i] = after[i + 1]
            elif self.greedy:
                best = here[n] = after[n]
                for i in range(n - 1, -1, -1):
                    if text[i] == "\n" or best is None:
                        best = after[i]
                    here[i] = best
            else:
                here[n] = after[n]
                for i in range(n - 1, -1, -1):
                    here[i] = after[i] if after[i] is not None or text[i] == "\n" else here[i + 1]
            after = here
        return after


def _trim_prefix(pattern: str, value: str, longest: bool) -> str:
    end = _Glob(pattern, greedy=longest).match_ends(value)[0]
    return value if end is None else value[end:]


def _reverse_pattern(pattern: str) -> str:
    """Reverse a pattern but keep each ``\\x`` escape pair in order (``a\\*c`` -> ``c\\*a``)."""
    return "".join(reversed(_ESCAPE_PAIR_OR_CHAR.findall(pattern)))


def _expand_template(template: str, match: str) -> str:
    """Go's ``Regexp.Expand`` for a regexp without groups: ``$$`` is ``$``, ``$0`` and
    ``${0}`` are the match, other well-formed ``$name`` / ``${name}`` are empty."""
    out: list[str] = []
    i = 0
    while (dollar := template.find("$", i)) >= 0:
        out.append(template[i:dollar])
        i = dollar + 1
        if template.startswith("$", i):
            out.append("$")
            i += 1
            continue
        brace = template.startswith("{", i)
        j = k = i + brace
        while k < len(template) and _is_name_char(template[k]):
            k += 1
        if k == j or (brace and not template.startswith("}", k)):
            out.append("$")  # malformed: a literal dollar
            continue
        if template[j:k] == "0":
            out.append(match)
        i = k + brace
    out.append(template[i:])
    return "".join(out)
