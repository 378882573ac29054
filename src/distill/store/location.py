"""Where the store is: a leaf with no imports of distill's own, so that the build record's
replay (builder/memo.py) can find it without loading the store's code."""

from __future__ import annotations

import os
from pathlib import Path


def default_root() -> Path:
    """``$DISTILL_ROOT``, else ``$XDG_DATA_HOME/distill`` (``~/.local/share/distill``)."""
    env = os.environ.get("DISTILL_ROOT")
    if env:
        return Path(env).expanduser().resolve()
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(data_home) / "distill"
