"""Image references (``[domain/]path[:tag][@digest]``) with Docker's grammar and its
normalisation: ``python`` is ``docker.io/library/python``, ``index.docker.io`` is
``docker.io``, and the first component is a registry only if it looks like a host
(has a dot or a port, or is ``localhost``, or has capitals), as docker/distribution reads it."""

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
DOCKER_HUB = "docker.io"
_HUB_ALIASES = ("index.docker.io", "registry-1.docker.io")
_HEX64 = re.compile(r"[a-f0-9]{64}")


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

    @property
    def domain(self) -> str:
        """The registry host of a normalised reference (``docker.io``, ``host:5000``)."""
        return self.name.split("/", 1)[0]

    @property
    def repository(self) -> str:
        """The path inside the registry of a normalised reference (``library/python``)."""
        return self.name.split("/", 1)[1]

    @property
    def familiar(self) -> str:
        """How ``docker images`` shows a normalised reference: ``python:3.12``."""
        name = self.name
        if name.startswith(DOCKER_HUB + "/"):
            name = name[len(DOCKER_HUB) + 1:]
            if name.startswith("library/") and name.count("/") == 1:
                name = name[len("library/"):]
        return str(Reference(name, self.tag, self.digest))


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


def normalize_reference(text: str) -> Reference:
    """The fully qualified reference Docker means by ``text`` (no default tag added)."""
    if _HEX64.fullmatch(text):
        raise UsageError(f"invalid repository name {text!r}: a 64-character hexadecimal "
                         "string is an image ID, not a name")
    domain, slash, rest = text.partition("/")
    if not slash or ("." not in domain and ":" not in domain and domain != "localhost"
                     and domain.lower() == domain):
        domain, rest = DOCKER_HUB, text
    if domain in _HUB_ALIASES:
        domain = DOCKER_HUB
    if domain == DOCKER_HUB and "/" not in rest.split(":", 1)[0].split("@", 1)[0]:
        rest = "library/" + rest
    try:
        ref = parse_reference(f"{domain}/{rest}")
    except UsageError as e:       # name the reference as it was written
        raise UsageError(f"invalid reference format: {text!r}", hint=e.hint) from None
    if ref.domain != domain:   # e.g. "a:b/c": the remainder held what only a domain may
        raise UsageError(f"invalid reference format: {text!r}")
    return ref


def normalize_name(text: str) -> str:
    """``text`` fully qualified, with ``:latest`` when it has neither tag nor digest: the
    form the store records names in."""
    return str(normalize_reference(text).with_default_tag())


def familiar_name(name: str) -> str:
    """How Docker shows a stored name (``python:3.12``); a name that is not a reference
    (another tool wrote it into the store's index) is shown as it is."""
    try:
        return normalize_reference(name).familiar
    except UsageError:
        return name
