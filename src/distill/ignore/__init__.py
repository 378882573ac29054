""".dockerignore support with BuildKit's exact rules.

What BuildKit does, and what this package reproduces:

* the ignore file is read with moby/patternmatcher's ``ignorefile.ReadAll``
  (:func:`read_ignore_file`, in :mod:`.files`);
* the patterns go to ``patternmatcher.New`` (:class:`PatternMatcher`, in :mod:`.patterns`),
  which cleans them and checks them with Go's ``filepath.Match`` syntax;
* each pattern is then turned, lazily, into an exact / prefix / suffix string test or into a
  *Go* regular expression, built by the same translation as upstream. That translation leaves
  ``^``, ``[...]`` and backslash escapes to the Go regexp engine, so their meaning is RE2's, not
  the glob's: ``\\d`` is a digit class, ``[[:alpha:]]`` a POSIX class, a literal ``^`` anchors.
  :mod:`.regexsyntax` parses the translated expression with RE2's rules and
  :mod:`.goregexp` runs it on its own automaton (a lazily built DFA), so matching is linear in the path length whatever the
  pattern. (Upstream's escape bitmap drops '|', '{' and '}', so those reach the regexp too.)
  Not reproduced: Unicode *script* classes such as ``\\p{Greek}`` (refused with a
  ContextError), Go's limit on huge compiled regexps, and Unicode-version differences;
* the build context is walked like tonistiigi/fsutil's filtered walk
  (:func:`walk_context`, in :mod:`.files`), which feeds ``MatchesUsingParentResults`` the
  parent directory's per-pattern results.

Paths are '/'-separated and relative to the context root. Bad patterns raise
:class:`~distill.errors.ContextError` with Go's text, ``syntax error in pattern``.

The package is pure: it imports only the leaves :mod:`distill.errors`, :mod:`distill.confine`
and :mod:`distill.gopath`.
"""

from __future__ import annotations

from distill.ignore.files import load_context_ignore, read_ignore_file, walk_context
from distill.ignore.patterns import BAD_PATTERN, MatchInfo, PatternMatcher
from distill.ignore.patterns import translate as translate  # for the conformance tests

__all__ = [
    "BAD_PATTERN",
    "MatchInfo",
    "PatternMatcher",
    "load_context_ignore",
    "read_ignore_file",
    "walk_context",
]
