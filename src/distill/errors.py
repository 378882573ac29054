"""The exception tree. Every error a user can cause is a DistillError.

A diagnostic carries a message, an optional hint and, when it comes from a
Dockerfile, the file and line range it points at. Only the CLI renders them.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass


@dataclass(frozen=True)
class SourceLocation:
    """Lines [start, end] (1-based, inclusive) of a file, with their text."""

    path: str
    start: int
    end: int
    text: str = ""

    def __str__(self) -> str:
        if self.start == self.end:
            return f"{self.path}:{self.start}"
        return f"{self.path}:{self.start}-{self.end}"


class DistillError(Exception):
    """Base of every error caused by input: Dockerfiles, contexts, images, flags."""

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        location: SourceLocation | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.location = location

    def at(self, location: SourceLocation | None) -> DistillError:
        """Attach a Dockerfile location unless one is already set; returns self."""
        if self.location is None:
            self.location = location
        return self


class DockerfileError(DistillError):
    """The Dockerfile cannot be parsed or means nothing valid."""


class ShellExpansionError(DockerfileError):
    """A ${...} expansion failed (bad syntax, ${VAR?msg} with VAR unset, ...)."""


class ContextError(DistillError):
    """A build-context source is missing or reaches outside the context."""


class ImageError(DistillError):
    """An image or layout is missing, malformed or fails verification."""


class DigestMismatchError(ImageError):
    """Content does not hash to the digest it claims."""


class StoreError(DistillError):
    """The local store cannot do what was asked (unknown name, ...)."""


class SandboxError(DistillError):
    """The sandbox could not be set up (missing bwrap, mount failure, ...)."""


class RunError(DistillError):
    """A RUN command exited non-zero."""

    def __init__(self, command: str, exit_code: int, **kwargs: object) -> None:
        super().__init__(
            f"process {command!r} did not complete successfully: exit code: {exit_code}",
            **kwargs,  # type: ignore[arg-type]
        )
        self.command = command
        self.exit_code = exit_code


class UsageError(DistillError):
    """A command-line flag or argument is wrong."""


class ArchiveError(DistillError):
    """The Debian archive cannot give what was asked (no such package, unreachable mirror)."""


class VerificationError(ArchiveError):
    """A signature or hash from the Debian archive does not verify: nothing is used."""


class RegistryError(DistillError):
    """A registry refused a request, could not be reached, or sent something unusable."""


class MachineError(DistillError):
    """The machine refused an operation: a full disk, a denied permission, a read-only
    filesystem, an I/O error. Not the input's fault, but one clear line all the same."""

    def __init__(self, message: str, code: int | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.errno = code


#: What a full or failing disk makes a write fail with (others are a source's failure:
#: a file that could not be read, a connection that broke).
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS,
                            errno.EFBIG})


def _hint_for(code: int | None, path: str, store: bool) -> str | None:
    where = f" holding {path}" if path else ""
    if code in (errno.ENOSPC, errno.EDQUOT):
        if not store:           # an output: a directory keeps what was written so far
            return f"free space on the filesystem{where} (df -h)"
        return (f"free space on the filesystem{where} (df -h); 'distill prune' removes "
                "what no tagged image needs, and nothing half-written was kept")
    if code in (errno.EACCES, errno.EPERM):
        return f"the user running distill must be allowed to write{' ' + path if path else ' there'}"
    if code == errno.EROFS:
        return "the filesystem is mounted read-only; DISTILL_ROOT can name a store elsewhere"
    if code == errno.EIO:
        return "the disk reported an I/O error: check the kernel log (dmesg)"
    return None


def os_failure(e: OSError, doing: str, path: object = None, *,
               store: bool = True) -> MachineError:
    """``e`` as one line naming what was being done and where: "cannot write a layer blob
    into the store at /store: No space left on device". ``store``: the path is in
    distill's store (which ``distill prune`` can shrink), not an output's."""
    where = str(path if path is not None else (e.filename or ""))
    reason = e.strerror or str(e)
    message = f"{doing} {where}: {reason}" if where else f"{doing}: {reason}"
    return MachineError(message, e.errno, hint=_hint_for(e.errno, where, store))
