"""The build context: a directory, filtered by .dockerignore as BuildKit filters it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from distill.ignore import PatternMatcher, load_context_ignore, walk_context


@dataclass
class BuildContext:
    root: Path
    matcher: PatternMatcher | None = None
    _included: set[str] | None = field(default=None, repr=False)

    @classmethod
    def load(cls, root: Path, dockerfile: Path | None) -> BuildContext:
        root = root.resolve()
        return cls(root, load_context_ignore(root, dockerfile))

    def allows(self, host_path: Path | str) -> bool:
        """Is this path (inside the context) part of the context, i.e. not ignored?"""
        if self.matcher is None:
            return True
        rel = os.path.relpath(host_path, self.root)
        if rel == ".":
            return True
        if self._included is None:
            self._included = {rel for rel, _ in walk_context(self.root, self.matcher)}
        return rel.replace(os.sep, "/") in self._included
