"""``RUN --mount=...`` and ``RUN --network=...`` values, read as BuildKit reads them.

One ``--mount`` value is a CSV record of ``key=value`` fields (``ro``, ``rw`` and
``required`` may stand alone). Keys are case-insensitive; every value is expanded
with the stage's variables first, except that ``from`` refuses variables outright
(BuildKit checks that before any expansion). Defaults are filled in here, so a
:class:`Mount` says exactly what to mount:

* bind: read-only unless ``rw``; ``source`` defaults to the root of the context
  (or of ``from``);
* cache: read-write unless ``ro``; ``id`` defaults to the cleaned target; sharing
  ``shared``; ``mode``/``uid``/``gid`` apply when the cache directory is created;
* tmpfs: read-write; ``size`` in bytes (0 = no limit), Docker's RAM units;
* secret: ``id`` defaults to ``source``, else the target's base name; ``target``
  defaults to ``/run/secrets/<id>`` unless ``env`` is given;
* ssh: ``id`` defaults to ``default``; an empty target means
  ``/run/buildkit/ssh_agent.<N>`` (see :func:`ssh_target`).

Relative targets are relative to the working directory: :meth:`Mount.resolved_target`.
Errors are :class:`~distill.errors.DockerfileError` with BuildKit's messages; the
caller attaches the instruction's location.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from distill.dockerfile.kernel import check_id, check_path
from distill.errors import DockerfileError
from distill.gopath import basename, clean


@dataclass(frozen=True)
class MountRules:
    """What one ``--mount`` type takes, as BuildKit checks it.

    ``readonly``: the default when neither ``ro`` nor ``rw`` is given;
    ``mount_point``: the target is a directory mounted over ("" means the working
    directory, "/" is refused), not a file or a socket that has a default place;
    ``required``, ``size``, ``owner`` (mode/uid/gid), ``sharing``: the keys it takes
    besides the common ones; ``source_path``: ``source`` is a path (checked as one).
    """

    readonly: bool
    mount_point: bool = False
    required: bool = False
    size: bool = False
    owner: bool = False
    sharing: bool = False
    source_path: bool = False


#: Every ``--mount`` type. A new one is a row here and an entry of the builder's
#: ``runmounts.MOUNT_KINDS``.
MOUNT_TYPES: dict[str, MountRules] = {
    "bind": MountRules(readonly=True, mount_point=True, source_path=True),
    "cache": MountRules(readonly=False, mount_point=True, owner=True, sharing=True,
                        source_path=True),
    "tmpfs": MountRules(readonly=False, mount_point=True, size=True),
    "secret": MountRules(readonly=True, required=True, owner=True),
    "ssh": MountRules(readonly=True, required=True, owner=True),
}
SHARING_MODES = ("shared", "private", "locked")
NETWORK_MODES = ("default", "none", "host")

#: Keys BuildKit suggests from when a key is unknown (in its order).
_ALL_KEYS = ("type", "from", "source", "target", "readonly", "id", "sharing", "required",
             "size", "mode", "uid", "gid", "src", "dst", "destination", "ro", "rw",
             "readwrite", "env")

_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")
_MAX_U32 = 2**32 - 1
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)*) ?([kmgtp])?i?b?\Z", re.IGNORECASE | re.ASCII)
_BINARY_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


@dataclass(frozen=True)
class Mount:
    """One ``--mount``, defaults filled in (see the module docstring)."""

    type: str = "bind"
    target: str = ""
    source: str = ""
    from_: str | None = None
    readonly: bool = True
    id: str = ""
    sharing: str = ""          # cache: shared | private | locked; "" for other types
    size: int = 0              # tmpfs: bytes, 0 = no limit
    required: bool = False     # secret, ssh
    env: str | None = None     # secret: also (or only) put it in this variable
    mode: int | None = None    # cache, secret, ssh
    uid: int | None = None
    gid: int | None = None

    def resolved_target(self, workdir: str = "/") -> str:
        """The absolute, cleaned mount point; a relative target is under ``workdir``."""
        target = self.target
        if not posixpath.isabs(clean(target)):
            target = posixpath.join("/", workdir, target)
        target = clean(target)
        if target == "/" and MOUNT_TYPES[self.type].mount_point:
            raise DockerfileError(f"invalid mount target {_q(target)}")
        return target


def ssh_target(mount: Mount, index: int) -> str:
    """Where an ssh mount's socket goes: its target, else ``/run/buildkit/ssh_agent.<index>``
    (``index`` counts the RUN's ssh mounts from 0)."""
    return mount.target or f"/run/buildkit/ssh_agent.{index}"


def parse_network(value: str) -> str:
    """``RUN --network=VALUE``: default, none or host (case-sensitive, no expansion)."""
    if value not in NETWORK_MODES:
        raise DockerfileError(f"invalid network mode {_q(value)}",
                              hint="use one of: " + ", ".join(NETWORK_MODES))
    return value


def mount_from(value: str) -> str | None:
    """The ``from=`` of a raw ``--mount`` value (None if absent), for planning stage edges.

    This is BuildKit's parse-time pass: only the CSV syntax and ``from`` are checked
    (``from`` takes no variables, so it needs no expansion); the last ``from`` wins.
    """
    found = None
    for field in csv_fields(value, "mounts"):
        key, eq, raw = field.partition("=")
        if eq and key.lower() == "from":
            if "$" in raw[:-1]:
                raise DockerfileError("'from' doesn't support variable expansion, "
                                      "define alias stage instead")
            found = raw
    return found


def parse_mount(value: str, expand: Callable[[str], str]) -> Mount:
    """Parse one ``--mount`` value; ``expand`` expands one word with the stage's variables."""
    mount_from(value)  # BuildKit's parse-time pass, before anything is expanded
    fields = csv_fields(value, "mounts")
    m: dict[str, object] = {"type": "bind"}
    ro_auto = True
    for field in fields:
        key, eq, raw = field.partition("=")
        key = key.lower()
        kind = m["type"]
        if not eq:
            if key in ("readonly", "ro", "readwrite", "rw"):
                m["readonly"] = key in ("readonly", "ro")
                ro_auto = False
            elif key == "required" and MOUNT_TYPES[str(kind)].required:
                m["required"] = True
            elif key == "required":
                raise DockerfileError(f"unexpected key '{key}' for mount type '{kind}'")
            else:
                raise DockerfileError(f"invalid field '{field}' must be a key=value pair")
            continue
        val = expand(raw)
        if key == "type":
            if val.lower() not in MOUNT_TYPES:
                raise _suggest(f"unsupported mount type {_q(val)}", val, list(MOUNT_TYPES))
            m["type"] = val.lower()
        elif key == "from":
            m["from_"] = val
        elif key in ("source", "src"):
            m["source"] = val
        elif key in ("target", "dst", "destination"):
            m["target"] = val
        elif key in ("readonly", "ro", "readwrite", "rw"):
            flag = _parse_bool(key, val)
            m["readonly"] = flag if key in ("readonly", "ro") else not flag
            ro_auto = False
        elif key == "required":
            if not MOUNT_TYPES[str(kind)].required:
                raise DockerfileError(f"unexpected key '{key}' for mount type '{kind}'")
            m["required"] = _parse_bool(key, val)
        elif key == "size":
            if not MOUNT_TYPES[str(kind)].size:
                raise DockerfileError(f"unexpected key '{key}' for mount type '{kind}'")
            m["size"] = ram_in_bytes(val, key)
        elif key == "id":
            m["id"] = val
        elif key == "sharing":
            if val.lower() not in SHARING_MODES:
                raise _suggest(f"unsupported sharing value {_q(val)}", val, SHARING_MODES)
            m["sharing"] = val.lower()
        elif key == "mode":
            m[key] = _parse_uint(key, val, 8)
        elif key in ("uid", "gid"):  # BuildKit takes 2^32 - 1 too: chown(2) reads "no change"
            m[key] = check_id(_parse_uint(key, val, 10), key)
        elif key == "env":
            m["env"] = val
        else:
            raise _suggest(f"unexpected key '{key}' in '{field}'", key, _ALL_KEYS)
    return _validate(m, ro_auto)


def _validate(m: dict[str, object], ro_auto: bool) -> Mount:
    kind = str(m["type"])
    rules = MOUNT_TYPES[kind]
    if not rules.owner:
        for key in ("mode", "uid", "gid"):
            if m.get(key) is not None:
                raise DockerfileError(f"{key} not allowed for {_q(kind)} type mounts")
    if ro_auto:
        m["readonly"] = rules.readonly
    source, target, ident = str(m.get("source", "")), str(m.get("target", "")), str(m.get("id", ""))
    check_path(target, "mount target")   # paths on their way to mount(2)
    if rules.source_path:                # (a secret's source is its id)
        check_path(source, "mount source")
    if kind == "secret":
        if m.get("from_"):
            raise DockerfileError("secret mount should not have a from")
        if m.get("sharing"):
            raise DockerfileError("secret mount should not define sharing")
        if not (source or target or ident):
            raise DockerfileError("invalid secret mount. one of source, target required")
        if source and ident:
            raise DockerfileError("both source and id can't be set")
    if m.get("sharing") and not rules.sharing:
        raise DockerfileError(f"invalid cache sharing set for {kind} mount")
    if kind == "cache":
        m.setdefault("sharing", "shared")
        m["id"] = ident or clean(target)
    elif kind == "secret":
        m["id"] = source or ident or basename(target)
        if m.get("env") is None and not target:
            m["target"] = "/run/secrets/" + basename(str(m["id"]))
    elif kind == "ssh":
        if source:
            raise DockerfileError("ssh does not support source")
        m["id"] = ident or "default"
    mount = Mount(**m)  # type: ignore[arg-type]
    if rules.mount_point and target.startswith("/"):
        mount.resolved_target()  # an absolute "/" is wrong whatever the workdir
    return mount


def csv_fields(value: str, what: str) -> list[str]:
    """The fields of one CSV record as Go's encoding/csv reads them (no lazy quotes)."""
    line = value
    if line.endswith("\r\n"):
        line = line[:-2]
    elif line.endswith("\n"):
        line = line[:-1]
    if not line:
        raise DockerfileError(f"failed to parse csv {what}: EOF")

    def error(pos: int, reason: str) -> DockerfileError:
        column = len(line[:pos].encode("utf-8", "surrogateescape")) + 1
        return DockerfileError(f"failed to parse csv {what}: parse error on line 1, "
                               f"column {column}: {reason}")

    fields: list[str] = []
    pos = 0
    while True:
        if not line.startswith('"', pos):
            end = line.find(",", pos)
            field = line[pos:] if end < 0 else line[pos:end]
            if '"' in field:
                raise error(pos + field.index('"'), 'bare " in non-quoted-field')
            fields.append(field)
            if end < 0:
                return fields
            pos = end + 1
            continue
        pos += 1
        parts: list[str] = []
        while True:
            end = line.find('"', pos)
            if end < 0:
                raise error(pos, 'extraneous or missing " in quoted-field')
            parts.append(line[pos:end])
            pos = end + 1
            if line.startswith('"', pos):      # "" is a quote inside the field
                parts.append('"')
                pos += 1
            elif line.startswith(",", pos):    # ", ends the field
                fields.append("".join(parts))
                pos += 1
                break
            elif pos == len(line):
                fields.append("".join(parts))
                return fields
            else:
                raise error(pos - 1, 'extraneous or missing " in quoted-field')


def ram_in_bytes(value: str, key: str = "size") -> int:
    """docker/go-units ``RAMInBytes``: ``512``, ``64k``, ``1.5MiB``, ``2g``... (binary units)."""
    match = _SIZE.match(value)
    if match is None:
        raise DockerfileError(f"invalid value for {key}: {value}")
    try:
        number = float(match.group(1))
    except ValueError:  # "1.2.3" passes the pattern but is no number
        raise DockerfileError(f"invalid value for {key}: {value}") from None
    unit = (match.group(2) or "").lower()
    return int(number * _BINARY_UNITS.get(unit, 1))


def _parse_bool(key: str, value: str) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise DockerfileError(f"invalid value for {key}: {value}")


def _parse_uint(key: str, value: str, radix: int) -> int:
    digits = "01234567" if radix == 8 else "0123456789"
    if not value or any(c not in digits for c in value) or int(value, radix) > _MAX_U32:
        raise DockerfileError(f"invalid value {value} for {key}")
    return int(value, radix)


def _q(value: str) -> str:
    """Go's %q for the strings that matter here."""
    return json.dumps(value, ensure_ascii=False)


def _levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def suggestion(value: str, options: Sequence[str]) -> str | None:
    """BuildKit's ``suggest.Search``: the first option closer than 3 edits, closest first."""
    best, distance = None, 3
    for option in options:
        if option == value:
            return None
        d = _levenshtein(value, option)
        if d < distance:
            best, distance = option, d
    return best


def _suggest(message: str, value: str, options: Sequence[str]) -> DockerfileError:
    close = suggestion(value, options)
    return DockerfileError(message, hint=f"did you mean {close}?" if close else None)
