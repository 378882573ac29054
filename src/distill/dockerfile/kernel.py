"""What Linux can hold: the checks a value passes before it becomes a syscall argument.

A Dockerfile (or a base image's config, or a --build-arg) can carry values no kernel
interface can represent: a NUL byte (C strings end at the first one), a file name over
255 bytes, a path over 4095, a process argument over 128 KiB, a user id over 2^32 - 2.
BuildKit writes such values into an image's config as they are (JSON can hold them) and
fails only when one reaches the kernel; distill does the same, and these functions are
where a value is checked on its way there. Each raises a
:class:`~distill.errors.DockerfileError` that names the value (escaped and shortened);
the build step attaches the instruction's file and line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from distill.errors import DockerfileError

PATH_MAX = 4096          # bytes, with the terminating NUL (linux/limits.h)
NAME_MAX = 255           # bytes in one file name
MAX_ARG_STRLEN = 32 * 4096   # bytes in one argv or environment string, with its NUL
MAX_ID = 2**32 - 2       # the largest uid/gid; 2^32 - 1 is (uid_t)-1, "leave unchanged"

_SHOWN = 64


def shown(value: str, limit: int = _SHOWN) -> str:
    """``value`` quoted for a message: control characters escaped, long values cut."""
    if len(value) > limit:
        return repr(value[:limit]) + f"... ({_size(value)} bytes)"
    return repr(value)


def _cut(value: str, limit: int = 24) -> str:
    return repr(value[:limit]) + "..." if len(value) > limit else repr(value)


def _size(value: str) -> int:
    """Bytes ``value`` takes as a C string (without its NUL), as os functions encode it."""
    return len(value.encode("utf-8", "surrogateescape"))


def check_path(path: str, what: str, *, lengths: bool = True) -> str:
    """``path`` (absolute or relative) as a file system can take it; returns it.

    ``what`` names the value in the message, e.g. ``"WORKDIR"``, ``"COPY destination"``.
    ``lengths=False`` checks only for NUL (a glob pattern may be longer than its matches)."""
    if "\0" in path:
        raise DockerfileError(f"{what} {shown(path)} contains a NUL byte, which no path "
                              "can hold")
    if not lengths:
        return path
    size = _size(path)
    if size >= PATH_MAX:
        raise DockerfileError(f"{what} {shown(path)} is too long: {size} bytes, and a path "
                              f"can have at most {PATH_MAX - 1} (PATH_MAX)")
    for name in path.split("/"):
        if _size(name) > NAME_MAX:
            raise DockerfileError(
                f"{what} {shown(path)} is too long: its name {_cut(name)} has "
                f"{_size(name)} bytes, and a file name can have at most {NAME_MAX} (NAME_MAX)")
    return path


def check_id(value: int, what: str) -> int:
    """A uid or gid the kernel can store; returns it. ``what``: e.g. ``"uid"``."""
    if not 0 <= value <= MAX_ID:
        raise DockerfileError(f"{what} {value} is out of range: user and group ids go from "
                              f"0 to {MAX_ID}")
    return value


def check_owner(owner: tuple[int, int]) -> tuple[int, int]:
    """A (uid, gid) pair for chown(2); returns it."""
    check_id(owner[0], "uid")
    check_id(owner[1], "gid")
    return owner


def check_process(argv: Iterable[str], env: Mapping[str, str], cwd: str) -> None:
    """A command, its environment and working directory as execve(2) can take them.

    Raised for a NUL byte (from the Dockerfile, an exec-form ``"\\u0000"``, a base image's
    config), for a string over ``MAX_ARG_STRLEN`` and for an unusable working directory."""
    for arg in argv:
        if "\0" in arg:
            raise DockerfileError(f"the command contains a NUL byte, which a process "
                                  f"argument cannot hold: {shown(arg)}")
        if _size(arg) >= MAX_ARG_STRLEN:
            raise DockerfileError(f"a command argument is too long: {_size(arg)} bytes, and "
                                  f"Linux takes at most {MAX_ARG_STRLEN - 1} in one "
                                  "(MAX_ARG_STRLEN)")
    for name, value in env.items():
        if "\0" in name or "\0" in value:
            raise DockerfileError(f"environment variable {shown(name)} contains a NUL byte, "
                                  "which a process environment cannot hold")
        if "=" in name or not name:
            raise DockerfileError(f"invalid environment variable name {shown(name)}")
        size = _size(name) + 1 + _size(value)
        if size >= MAX_ARG_STRLEN:
            raise DockerfileError(f"environment variable {shown(name)} is too long: {size} "
                                  f"bytes, and Linux takes at most {MAX_ARG_STRLEN - 1} in "
                                  "one (MAX_ARG_STRLEN)")
    check_path(cwd, "working directory")
