"""EXPOSE port specs -> "port/proto" keys, as BuildKit's converter reads them.

A spec is ``[ip:][hostPort:]containerPort[-end][/proto]``; the IP and host port are
checked and ignored, a range expands to every port, the protocol is lower-cased.
"""

from __future__ import annotations

import ipaddress

from distill.errors import DockerfileError


def _split_proto(raw: str) -> tuple[str, str]:
    parts = raw.split("/")
    if not raw or not parts[0]:
        return "", ""
    if len(parts) == 1 or not parts[1]:
        return "tcp", parts[0]
    return parts[1], parts[0]


def _split_parts(raw: str) -> tuple[str, str, str]:
    parts = raw.split(":")
    if len(parts) == 1:
        return "", "", parts[0]
    if len(parts) == 2:
        return "", parts[0], parts[1]
    return ":".join(parts[:-2]), parts[-2], parts[-1]


def _range(spec: str, what: str, raw: str) -> range:
    start, _, end = spec.partition("-")
    # Go's strconv.ParseUint(s, 10, 16): ASCII digits only (Python's int() would also
    # take "+80", " 80", "8_0" and other scripts' digits)
    if not all(part.isascii() and part.isdigit() for part in (start, end or start)):
        raise DockerfileError(f"invalid {what}: {spec}")
    lo = int(start)
    hi = int(end) if end else lo
    if not (0 <= lo <= 65535 and 0 <= hi <= 65535) or hi < lo:
        raise DockerfileError(f"invalid {what}: {spec}")
    return range(lo, hi + 1)


def parse_port(raw: str) -> list[str]:
    proto, rest = _split_proto(raw)
    ip, host_port, container = _split_parts(rest)
    if not container:
        raise DockerfileError(f'invalid port: "{raw}": no port specified')
    if ip:
        address = ip[1:-1] if ip.startswith("[") and ip.endswith("]") else ip
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise DockerfileError(f"invalid IP address: {ip}") from None
    ports = _range(container, "containerPort", raw)
    if host_port:
        _range(host_port, "hostPort", raw)
    return [f"{port}/{proto.lower()}" for port in ports]


def parse_ports(specs: list[str]) -> list[str]:
    return [key for spec in specs for key in parse_port(spec)]
