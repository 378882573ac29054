"""The subset of Go's regexp package that .dockerignore patterns reach.

moby/patternmatcher turns a glob into a Go regular expression and leaves ``^``, ``[...]``
and backslash escapes to Go's regexp engine, so their meaning is RE2's (``\\d`` is a digit
class, ``[[:alpha:]]`` a POSIX class, ``{n,m}`` a counted repetition). This module parses
that syntax with RE2's rules (syntax.Perl flags) into a small tree, compiles it to a
Thompson NFA and runs it as a DFA built on demand, so matching is linear in the text length
whatever the pattern.

Not reproduced: Unicode *script* classes such as ``\\p{Greek}`` (:class:`UnsupportedRegex`),
Go's limit on huge compiled regexps, and Unicode-version differences.

The syntax is parsed by :mod:`distill.ignore.regexsyntax` (Go's ``regexp/syntax``); this
module compiles its tree and runs it (Go's ``regexp``).
"""

from __future__ import annotations

from distill.ignore.regexsyntax import (
    CharClass,
    Node,
    Parser,
    RegexError,
    UnsupportedRegex,
    is_word,
)

__all__ = ["GoRegexp", "RegexError", "UnsupportedRegex"]


_CHAR, _SPLIT, _ASSERT, _MATCH = 0, 1, 2, 3
_BEGIN, _WORD, _OTHER = 0, 1, 2  # what precedes the current position
_MAX_DFA_STATES = 2000


class _DState:
    """A DFA state: the NFA nodes pending closure, and the kind of character before."""

    __slots__ = ("end", "ids", "prev", "trans")

    def __init__(self, ids: frozenset[int], prev: int, end: bool | None = None) -> None:
        self.ids = ids
        self.prev = prev
        self.trans: dict[str, _DState] = {}
        self.end = end  # does the text match if it ends here (None: not computed yet)


# absorbing states: a match was found / no match is possible any more
_ACCEPT = _DState(frozenset(), _OTHER, end=True)
_DEAD = _DState(frozenset(), _OTHER, end=False)


class GoRegexp:
    """A compiled Go regexp: Thompson NFA, run as a DFA built on demand (linear time).

    ``search(text)`` answers Go's ``MatchString``: is there a match anywhere in text.
    """

    def __init__(self, source: str) -> None:
        tree = Parser(source).parse()
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

    def _build(self, node: Node, nxt: int) -> int:
        op = node[0]
        if op == "lit":
            return self._node(_CHAR, CharClass([("range", ord(node[1]), ord(node[1]))]), nxt, -1)
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
    def _starts_anchored(tree: Node) -> bool:
        node = tree
        while True:
            if node[0] == "alt" and len(node[1]) == 1 or node[0] == "cat" and node[1]:
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
        next_word = nxt is not None and is_word(nxt)
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
                prev = (_WORD if is_word(ch) else _OTHER) if self.words else _OTHER
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

