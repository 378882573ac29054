"""``--name=value`` flags of an instruction, checked against what it accepts."""

from __future__ import annotations

import difflib

from distill.dockerfile.parse import Node
from distill.errors import DockerfileError

# Flags Docker knows that distill does not implement yet; named so the error says so.
KNOWN_UNSUPPORTED = {"link", "parents", "exclude", "mount", "network", "security", "checksum",
                     "keep-git-dir", "device", "start-interval", "interval", "timeout",
                     "start-period", "retries"}


def parse_flags(node: Node, accepted: dict[str, str | None]) -> dict[str, str | None]:
    """Return accepted flag values (None when absent). Unknown flags are errors."""
    values = dict(accepted)
    seen: set[str] = set()
    for raw in node.flags:
        if not raw.startswith("--"):
            raise DockerfileError(f"invalid flag {raw!r}", location=node.location)
        name, eq, value = raw[2:].partition("=")
        if name not in accepted:
            what = node.cmd.upper()
            if name in KNOWN_UNSUPPORTED:
                raise DockerfileError(f"{what} --{name} is not supported by distill yet",
                                      location=node.location)
            close = difflib.get_close_matches(name, list(accepted), n=1, cutoff=0.6)
            raise DockerfileError(f"unknown flag: --{name} for {what}",
                                  hint=f"did you mean --{close[0]}?" if close else None,
                                  location=node.location)
        if not eq:
            raise DockerfileError(f"missing a value on flag: --{name}", location=node.location)
        if name in seen:
            raise DockerfileError(f"duplicate flag specified: --{name}", location=node.location)
        seen.add(name)
        values[name] = value
    return values
