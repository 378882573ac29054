"""Debian package relationship fields (Depends, Pre-Depends, Provides) and versions.

``Depends: a (>= 1) | b, c:any`` is an AND of OR-groups of relations; a relation names a
package, optionally an architecture qualifier, a version constraint (``<<  <=  =  >=  >>``,
and the obsolete ``<`` / ``>`` meaning ``<=`` / ``>=``), an architecture restriction list
(``[amd64 !i386]``) and build profiles (ignored: they only matter to source packages).
Versions compare as dpkg does (python-debian's ``Version``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from debian.debian_support import Version

from distill.errors import ArchiveError

_RELATION = re.compile(
    r"""\s*(?P<name>[A-Za-z0-9][A-Za-z0-9+.\-]*)
        (?::(?P<arch>[A-Za-z0-9\-]+))?
        \s*(?:\(\s*(?P<op><<|<=|>=|>>|=|<|>)\s*(?P<version>[^\s)]+)\s*\))?
        \s*(?:\[(?P<archs>[^\]]*)\])?
        \s*(?:<[^>]*>\s*)*$""",
    re.VERBOSE,
)
_OBSOLETE = {"<": "<=", ">": ">="}


@dataclass(frozen=True)
class Relation:
    """One alternative of a dependency: ``name[:arch] [(op version)]``."""

    name: str
    arch: str | None = None
    op: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        text = self.name if self.arch is None else f"{self.name}:{self.arch}"
        return text if self.op is None else f"{text} ({self.op} {self.version})"


def parse_relations(text: str, *, arch: str | None = None) -> list[tuple[Relation, ...]]:
    """A Depends-like field as OR-groups; relations restricted away from ``arch`` drop out."""
    groups: list[tuple[Relation, ...]] = []
    for clause in text.split(","):
        if not clause.strip():
            continue
        alternatives = [_parse(alt, arch=arch) for alt in clause.split("|")]
        group = tuple(rel for rel in alternatives if rel is not None)
        if group:
            groups.append(group)
    return groups


def _parse(text: str, *, arch: str | None) -> Relation | None:
    match = _RELATION.fullmatch(text.strip().replace("\n", " "))
    if match is None:
        raise ArchiveError(f"malformed package relation {text.strip()!r}")
    archs = match["archs"]
    if archs is not None and arch is not None and not _arch_matches(archs.split(), arch):
        return None
    op = match["op"]
    return Relation(name=match["name"], arch=match["arch"], op=_OBSOLETE.get(op, op),
                    version=match["version"])


def _arch_matches(restrictions: list[str], arch: str) -> bool:
    negated = [a[1:] for a in restrictions if a.startswith("!")]
    if negated:
        return arch not in negated
    return arch in restrictions or "any" in restrictions


def version(text: str) -> Version:
    """A comparable Debian version; ArchiveError if it is not one."""
    try:
        return Version(text)
    except ValueError as exc:
        raise ArchiveError(f"not a Debian version: {text!r}") from exc


def compare(left: Version, op: str, right: Version) -> bool:
    """``left op right`` for a Debian relation operator."""
    if op == "<<":
        return left < right
    if op == "<=":
        return left <= right
    if op == "=":
        return left == right
    if op == ">=":
        return left >= right
    if op == ">>":
        return left > right
    raise ArchiveError(f"unknown version operator {op!r}")
