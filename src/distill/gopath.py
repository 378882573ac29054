"""Go's ``path.Clean`` and ``path.Base``, which BuildKit and moby/patternmatcher apply to
paths and patterns."""

from __future__ import annotations


def clean(path: str) -> str:
    """Lexical cleaning: '' -> '.', '.' and empty parts dropped, '..' folded, one leading '/'."""
    if not path:
        return "."
    rooted = path.startswith("/")
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    joined = "/".join(out)
    return "/" + joined if rooted else (joined or ".")


def basename(path: str) -> str:
    """Go's ``path.Base``."""
    if not path:
        return "."
    path = path.rstrip("/")
    if not path:
        return "/"
    return path.rsplit("/", 1)[-1]
