"""``--name=value`` flags of an instruction, checked against what it accepts."""

from __future__ import annotations

import dataclasses
import difflib

from distill.dockerfile._golike import quote
from distill.dockerfile.parser import Node
from distill.errors import DockerfileError

#: Flags BuildKit knows that distill does not implement, by instruction, so that the
#: error says so rather than "unknown flag" (``RUN --security=insecure`` needs a
#: privileged container; ``RUN --device`` hands a host device to the step).
KNOWN_UNSUPPORTED = {"run": {"security", "device"}}


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
            if name in KNOWN_UNSUPPORTED.get(node.cmd, ()):
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


# -- Go value syntax ------------------------------------------------------------------
# BuildKit reads flag values with Go's parsers; these give the same values and errors.

go_quote = quote  # strconv.Quote, shared with the parser


def _time_quote(s: bytes) -> str:
    """The time package's own quote: bytes outside printable ASCII become \\xHH."""
    out = ['"']
    for b in s:
        if b >= 0x80 or b < 0x20:
            out.append(f"\\x{b:02x}")
        else:
            c = chr(b)
            out.append("\\" + c if c in '"\\' else c)
    return "".join(out) + '"'


_UNITS = {b"ns": 1, b"us": 1_000, "µs".encode(): 1_000, "μs".encode(): 1_000,
          b"ms": 1_000_000, b"s": 10**9, b"m": 60 * 10**9, b"h": 3600 * 10**9}
_MAX = 1 << 63


def parse_go_duration(text: str) -> int:
    """Go's time.ParseDuration: nanoseconds, or ValueError with Go's message."""
    orig = text.encode("utf-8", "surrogateescape")
    s = orig
    invalid = ValueError("time: invalid duration " + _time_quote(orig))
    neg = False
    if s[:1] in (b"-", b"+"):
        neg, s = s[:1] == b"-", s[1:]
    if s == b"0":
        return 0
    if not s:
        raise invalid
    total = 0
    while s:
        if not (s[:1] == b"." or s[:1].isdigit()):
            raise invalid
        i = 0
        v = 0
        while i < len(s) and 0x30 <= s[i] <= 0x39:
            if v > _MAX // 10:
                raise invalid
            v = v * 10 + s[i] - 0x30
            if v > _MAX:
                raise invalid
            i += 1
        pre = i > 0
        s = s[i:]
        f, scale, post = 0, 1.0, False
        if s[:1] == b".":
            s = s[1:]
            i, overflow = 0, False
            while i < len(s) and 0x30 <= s[i] <= 0x39:
                if not overflow:
                    if f > (_MAX - 1) // 10:
                        overflow = True
                    else:
                        y = f * 10 + s[i] - 0x30
                        if y > _MAX:
                            overflow = True
                        else:
                            f, scale = y, scale * 10
                i += 1
            post = i > 0
            s = s[i:]
        if not pre and not post:
            raise invalid
        i = 0
        while i < len(s) and not (s[i] == 0x2E or 0x30 <= s[i] <= 0x39):
            i += 1
        if i == 0:
            raise ValueError("time: missing unit in duration " + _time_quote(orig))
        unit_name, s = s[:i], s[i:]
        unit = _UNITS.get(unit_name)
        if unit is None:
            raise ValueError(f"time: unknown unit {_time_quote(unit_name)} in duration "
                             + _time_quote(orig))
        if v > _MAX // unit:
            raise invalid
        v *= unit
        if f > 0:
            v += int(float(f) * (float(unit) / scale))
            if v > _MAX:
                raise invalid
        total += v
        if total > _MAX:
            raise invalid
    if neg:
        return -total
    if total > _MAX - 1:
        raise invalid
    return total


def format_go_duration(ns: int) -> str:
    """Go's time.Duration.String: 1h30m0s, 1.5s, 500ms, 999µs, 0s."""
    if ns == 0:
        return "0s"
    neg, u = ns < 0, abs(ns)
    if u < 10**9:
        for unit, size in (("ns", 1), ("µs", 10**3), ("ms", 10**6)):
            if u < size * 1000:
                return ("-" if neg else "") + _fraction(u, size) + unit
    secs, frac = divmod(u, 10**9)
    out = _fraction(frac + (secs % 60) * 10**9, 10**9) + "s"
    mins = secs // 60
    if mins:
        out = f"{mins % 60}m" + out
        if mins >= 60:
            out = f"{mins // 60}h" + out
    return ("-" if neg else "") + out


def _fraction(value: int, size: int) -> str:
    whole, frac = divmod(value, size)
    if not frac:
        return str(whole)
    digits = str(frac).rjust(len(str(size)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"


def parse_go_int32(text: str) -> int:
    """Go's strconv.ParseInt(text, 10, 32), with its error messages."""
    head = text[1:] if text[:1] in "+-" else text
    if not head or not all("0" <= c <= "9" for c in head):
        raise ValueError(f"strconv.ParseInt: parsing {go_quote(text)}: invalid syntax")
    value = int(text)
    if not -(1 << 31) <= value < (1 << 31):
        raise ValueError(f"strconv.ParseInt: parsing {go_quote(text)}: value out of range")
    return value


def repeated_flag(node: Node, name: str) -> tuple[Node, tuple[str, ...]]:
    """Take out every ``--name=value`` (BuildKit's AddStrings flags: --mount may repeat)."""
    values, rest = [], []
    for raw in node.flags:
        flag, eq, value = raw[2:].partition("=") if raw.startswith("--") else ("", "", "")
        if flag != name:
            rest.append(raw)
        elif not eq:
            raise DockerfileError(f"missing a value on flag: --{name}", location=node.location)
        else:
            values.append(value)
    return dataclasses.replace(node, flags=tuple(rest)), tuple(values)


def bool_flag(node: Node, name: str) -> tuple[Node, bool]:
    """Take out ``--name`` / ``--name=true|false`` (BuildKit's AddBool flags): a bare
    flag is true, the value is read case-insensitively, ``--name=`` has no value."""
    found: bool | None = None
    rest = []
    for raw in node.flags:
        flag, eq, value = raw[2:].partition("=") if raw.startswith("--") else ("", "", "")
        if flag != name:
            rest.append(raw)
            continue
        if found is not None:
            raise DockerfileError(f"duplicate flag specified: --{name}", location=node.location)
        if eq and not value:
            raise DockerfileError(f"missing a value on flag: {raw}", location=node.location)
        if value.lower() in ("true", ""):
            found = True
        elif value.lower() == "false":
            found = False
        else:
            raise DockerfileError(f"expecting boolean value for flag {name}, not: {value}",
                                  location=node.location)
    return dataclasses.replace(node, flags=tuple(rest)), bool(found)
