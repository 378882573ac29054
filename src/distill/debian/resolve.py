"""The closure of a package set over Pre-Depends and Depends, distroless style.

Greedy and deterministic, like apt's first pass without its scoring:

* a wanted entry is ``name`` (the newest version) or ``name=version`` (exactly that);
* each chosen package's Pre-Depends then Depends are visited breadth-first; a relation is
  met by a chosen package of that name whose version satisfies it, or by a chosen
  package that Provides it (a versioned dependency needs a versioned Provides);
* an OR-group none of whose members is chosen waits until every plain dependency has
  been followed, so ``a | b`` takes ``b`` when something else needed ``b`` anyway;
  otherwise its first installable member wins (the newest matching version of a real
  package, else a provider: the one of highest Priority, then by name);
* an ``exclude``d package is never installed and a relation it could satisfy (by name
  or by what it Provides) counts as met: the image will not run its maintainer scripts;
* Recommends and Suggests are not followed; only ARCH and ``all`` packages are used.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Mapping, Sequence

from debian.debian_support import Version

from distill.debian.control import PackageRecord
from distill.debian.relations import Relation, compare, parse_relations, version
from distill.errors import ArchiveError

_Provided = tuple[PackageRecord, str | None]  # a provider and the version it provides


def resolve(index: Mapping[str, list[PackageRecord]], wanted: Sequence[str], *, arch: str,
            exclude: Collection[str] = (), with_deps: bool = True) -> list[PackageRecord]:
    """The packages to install for ``wanted``, sorted by name; ArchiveError if impossible."""
    resolver = _Resolver(index, arch, exclude)
    for spec in wanted:
        name, sep, pinned = spec.strip().partition("=")
        name = name.strip()
        if not name or (sep and not pinned.strip()):
            raise ArchiveError(f"bad package spec {spec!r}: use NAME or NAME=VERSION")
        resolver.want(name, pinned.strip() or None)
    if with_deps:
        resolver.close_over_dependencies()
    return sorted(resolver.chosen.values(), key=lambda r: r.name)


class _Resolver:
    def __init__(self, index: Mapping[str, list[PackageRecord]], arch: str,
                 exclude: Collection[str]) -> None:
        self.index = index
        self.arch = arch
        self.exclude = frozenset(exclude)
        self.chosen: dict[str, PackageRecord] = {}
        self.chains: dict[str, tuple[str, ...]] = {}
        self.queue: deque[PackageRecord] = deque()
        self._versions: dict[str, Version] = {}
        self._records: dict[str, list[PackageRecord]] = {}
        self._providers: dict[str, list[_Provided]] | None = None
        self._chosen_provides: dict[str, list[_Provided]] = {}
        self._excluded_virtual = {rel.name for name in self.exclude
                                  for rec in self.records(name) for rel in self.provides(rec)}

    # -- lookups ---------------------------------------------------------------------

    def version(self, text: str) -> Version:
        parsed = self._versions.get(text)
        if parsed is None:
            parsed = self._versions[text] = version(text)
        return parsed

    def records(self, name: str) -> list[PackageRecord]:
        """Records of ``name`` usable on this architecture, newest first."""
        found = self._records.get(name)
        if found is None:
            usable = [r for r in self.index.get(name, ()) if r.architecture in (self.arch, "all")]
            usable.sort(key=lambda r: (self.version(r.version), r.architecture, r.filename),
                        reverse=True)
            found = self._records[name] = usable
        return found

    def provides(self, rec: PackageRecord) -> list[Relation]:
        return [rel for group in parse_relations(rec.field("Provides"), arch=self.arch)
                for rel in group]

    def providers(self, name: str) -> list[_Provided]:
        if self._providers is None:
            table: dict[str, list[_Provided]] = {}
            usable = (self.arch, "all")
            for pkg in sorted(self.index):
                for rec in self.index[pkg]:
                    if rec.architecture in usable and rec.field("Provides"):
                        for rel in self.provides(rec):
                            table.setdefault(rel.name, []).append((rec, rel.version))
            self._providers = table
        return self._providers.get(name, [])

    def matches(self, have: str | None, rel: Relation) -> bool:
        """Whether version ``have`` (None: an unversioned Provides) satisfies ``rel``."""
        if rel.op is None or rel.version is None:
            return True
        if have is None:
            return False
        return compare(self.version(have), rel.op, self.version(rel.version))

    def arch_ok(self, rel: Relation) -> bool:
        return rel.arch in (None, "any", "native", self.arch)

    # -- choosing ---------------------------------------------------------------------

    def want(self, name: str, pinned: str | None) -> None:
        if name in self.exclude:
            raise ArchiveError(f"{name} is both wanted and excluded")
        candidates = self.records(name)
        if pinned is not None:
            exact = [r for r in candidates if self.version(r.version) == self.version(pinned)]
            if not exact:
                raise ArchiveError(f"{name}={pinned}: no such version"
                                   + _available(candidates))
            self.choose(exact[0], ())
            return
        if candidates:
            self.choose(candidates[0], ())
            return
        providing = [rec for rec, _ in self.providers(name) if rec.name not in self.exclude]
        providers = sorted({rec.name for rec in providing})
        if len(providers) == 1:
            newest = max(providing, key=lambda r: self.version(r.version))
            self.choose(newest, (name,))
        elif providers:
            raise ArchiveError(f"{name} is a virtual package provided by "
                               f"{', '.join(providers)}", hint="ask for one of them by name")
        else:
            raise ArchiveError(f"{name}: no such package")

    def choose(self, rec: PackageRecord, via: tuple[str, ...]) -> None:
        old = self.chosen.get(rec.name)
        if old is not None:
            if old != rec:
                raise ArchiveError(
                    f"{' -> '.join((*via, rec.name))}: needs {rec.name} {rec.version} but "
                    f"{old.version} was chosen (via {' -> '.join(self.chains[rec.name])})")
            return
        self.chosen[rec.name] = rec
        self.chains[rec.name] = (*via, rec.name)
        for rel in self.provides(rec):
            self._chosen_provides.setdefault(rel.name, []).append((rec, rel.version))
        self.queue.append(rec)

    def satisfied(self, group: tuple[Relation, ...]) -> bool:
        for rel in group:
            if not self.arch_ok(rel):
                continue
            if rel.name in self.exclude or rel.name in self._excluded_virtual:
                return True
            rec = self.chosen.get(rel.name)
            if rec is not None and self.matches(rec.version, rel):
                return True
            if any(self.matches(have, rel) for _, have in self._chosen_provides.get(rel.name, ())):
                return True
        return False

    def pick(self, group: tuple[Relation, ...], chain: tuple[str, ...]) -> PackageRecord:
        reasons: list[str] = []
        for rel in group:
            reason, rec = self._candidate(rel)
            if rec is not None:
                return rec
            reasons.append(reason if len(group) == 1 else f"{rel}: {reason}")
        text = " | ".join(str(rel) for rel in group)
        raise ArchiveError(f"{' -> '.join(chain)} -> {text}: {'; '.join(reasons)}")

    def _candidate(self, rel: Relation) -> tuple[str, PackageRecord | None]:
        if not self.arch_ok(rel):
            return f"architecture {rel.arch} is not {self.arch}", None
        chosen = self.chosen.get(rel.name)
        if chosen is not None:
            via = " -> ".join(self.chains[rel.name])
            return f"{chosen.version} is already chosen (via {via})", None
        real = self.records(rel.name)
        for rec in real:
            if self.matches(rec.version, rel):
                return "", rec
        providers = sorted(
            ((rec, have) for rec, have in self.providers(rel.name)
             if rec.name not in self.exclude and rec.name not in self.chosen
             and self.matches(have, rel)),
            key=lambda p: (_priority(p[0]), p[0].name, _Newest(self.version(p[0].version))))
        if providers:
            return "", providers[0][0]
        if real:
            return "no version satisfies it" + _available(real), None
        if self.providers(rel.name):
            return "no provider satisfies it", None
        return "no such package", None

    def close_over_dependencies(self) -> None:
        waiting: deque[tuple[tuple[Relation, ...], tuple[str, ...]]] = deque()
        while self.queue or waiting:
            while self.queue:
                rec = self.queue.popleft()
                chain = self.chains[rec.name]
                for group in self.dependencies(rec):
                    if self.satisfied(group):
                        continue
                    if len(group) > 1:
                        waiting.append((group, chain))
                    else:
                        self.choose(self.pick(group, chain), chain)
            if waiting:
                group, chain = waiting.popleft()
                if not self.satisfied(group):
                    self.choose(self.pick(group, chain), chain)

    def dependencies(self, rec: PackageRecord) -> list[tuple[Relation, ...]]:
        try:
            return [*parse_relations(rec.field("Pre-Depends"), arch=self.arch),
                    *parse_relations(rec.field("Depends"), arch=self.arch)]
        except ArchiveError as exc:
            raise ArchiveError(f"{rec}: {exc.message}") from exc


class _Newest:
    """Sort key wrapper: newer versions first."""

    def __init__(self, v: Version) -> None:
        self.v = v

    def __lt__(self, other: _Newest) -> bool:
        return self.v > other.v


_PRIORITIES = ("required", "important", "standard", "optional", "extra")


def _priority(rec: PackageRecord) -> int:
    """Rank of a package's Priority: among providers, apt too prefers required ones."""
    priority = rec.field("Priority")
    return _PRIORITIES.index(priority) if priority in _PRIORITIES else len(_PRIORITIES)


def _available(records: Sequence[PackageRecord]) -> str:
    if not records:
        return ""
    return f" (available: {', '.join(r.version for r in records)})"
