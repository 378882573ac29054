"""The build context: a directory, filtered by .dockerignore as BuildKit filters it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from distill.confine import read_file_in_root
from distill.errors import DistillError, UsageError
from distill.ignore import PatternMatcher, load_context_ignore, walk_context

DOCKERFILE = "Dockerfile"
# The largest Dockerfile distill reads from a context (real ones are a few KiB).
DOCKERFILE_LIMIT = 16 << 20


def read_dockerfile(context: Path, file: Path | None) -> str:
    """The Dockerfile's text: ``file`` when the user names one (``-f``: trusted, read as
    given), else CONTEXT/Dockerfile read inside the context as BuildKit reads it from the
    local source: a symlink is followed only within the context, and only a regular file
    (up to 16 MiB) is read."""
    if file is not None:
        try:
            return file.read_text()
        except FileNotFoundError:
            raise UsageError(f"Dockerfile not found: {file}") from None
        except (UnicodeDecodeError, OSError) as e:
            raise UsageError(f"cannot read {file}: {e}") from None
    shown = context / DOCKERFILE
    try:
        data = read_file_in_root(context, DOCKERFILE, DOCKERFILE_LIMIT, what=str(shown))
    except DistillError as e:
        raise UsageError(f"cannot read the Dockerfile: {e.message}") from None
    if data is None:
        hint = ("a symlink in the build context is followed only inside the context"
                if os.path.islink(shown) else None)
        raise UsageError(f"Dockerfile not found: {shown}", hint=hint)
    try:
        return data.decode()
    except UnicodeDecodeError as e:
        raise UsageError(f"cannot read {shown}: {e}") from None


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
