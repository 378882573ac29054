"""Image references (``[domain/]path[:tag][@digest]``) with Docker's grammar."""

from __future__ import annotations

import re
from dataclasses import dataclass

from distill.errors import UsageError

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"(?P<name>(?:(?P<domain>{_DOMAIN})/)?{_COMPONENT}(?:/{_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?"
)
MAX_NAME = 255


@dataclass(frozen=True)
class Reference:
    name: str
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        s = self.name
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s

    def with_default_tag(self) -> Reference:
        """``name`` means ``name:latest``, as Docker reads it."""
        if self.tag is None and self.digest is None:
            return Reference(self.name, "latest")
        return self


def parse_reference(text: str) -> Reference:
    """Parse an image name as ``docker tag`` does; raise UsageError if it is not one."""
    match = _REFERENCE.fullmatch(text)
    if match is None:
        hint = None
        lowered = _REFERENCE.fullmatch(text.lower())
        if text and lowered is not None:
            hint = "repository names must be lowercase"
        raise UsageError(f"invalid reference format: {text!r}", hint=hint)
    if len(match["name"]) > MAX_NAME:
        raise UsageError(f"invalid reference format: repository name must not be more than "
                         f"{MAX_NAME} characters: {text!r}")
    return Reference(match["name"], match["tag"], match["digest"])
