"""Shared by the benches: buildah with a store of its own under ``home``."""

from __future__ import annotations

from pathlib import Path


def buildah_argv(home: Path, *args: str) -> list[str]:
    """buildah over the overlay driver with its root and runroot under ``home``."""
    return ["buildah", "--root", str(home / "root"), "--runroot", str(home / "run"),
            "--storage-driver", "overlay", *args]
