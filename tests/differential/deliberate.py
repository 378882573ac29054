"""Differences between distill and buildah that are deliberate, one sentence each.

distill follows BuildKit (``docker buildx build``). Where buildah's semantics differ from
BuildKit's, the buildah snapshot is turned into what BuildKit would give before comparing:
either by a general rule (``adjust``), or, where only the case knows which paths are
concerned, by the case's ``expect`` (``{rule name: {path: {field: value}}}``, or
``{rule name: {"config:FIELD": value}}`` for a config field; see cases.py). Every rule
is named in ``DELIBERATE`` with its reason, and a failure message lists the rules that
were applied, so nothing is loosened silently. Any other difference is a bug in one of
the builders.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.helpers.compare import ImageSnapshot, children, is_empty_stub

# Mount points buildah's chroot isolation creates for a RUN when the image lacks them.
RUN_STUBS = ("dev", "proc", "sys", "run", "etc/hosts", "etc/hostname", "etc/resolv.conf")

Adjust = Callable[[ImageSnapshot, ImageSnapshot], bool]


@dataclass(frozen=True)
class Deliberate:
    why: str
    # General rule: adjusts the (distill, buildah) snapshots, True if it changed anything.
    # None: the rule is applied only where a case's ``expect`` names it.
    adjust: Adjust | None = None
    reference: str = "buildah"     # the reference builder whose semantics the rule concerns


def _drop_run_stubs(ours: ImageSnapshot, theirs: ImageSnapshot) -> bool:
    changed = False
    for rel in RUN_STUBS:
        entry = theirs.tree.get(rel)
        if rel in ours.tree or not is_empty_stub(entry):
            continue
        if entry is not None and entry["type"] == "dir" and children(theirs.tree, rel):
            continue
        del theirs.tree[rel]
        theirs.mtimes.pop(rel, None)
        changed = True
    return changed


_PORT = re.compile(r"^(\d+)(?:-(\d+))?(?:/(\w+))?$")


def _expose_as_buildkit(ours: ImageSnapshot, theirs: ImageSnapshot) -> bool:
    ports = theirs.config.get("ExposedPorts")
    if not ports:
        return False
    normalized: dict[str, Any] = {}
    for key in ports:
        m = _PORT.match(key)
        if m is None:
            normalized[key] = {}
            continue
        start, end, proto = int(m[1]), int(m[2] or m[1]), (m[3] or "tcp").lower()
        for port in range(start, end + 1):
            normalized[f"{port}/{proto}"] = {}
    if normalized == ports:
        return False
    theirs.config["ExposedPorts"] = normalized
    return True


DELIBERATE: dict[str, Deliberate] = {
    "run-mount-stubs": Deliberate(
        "buildah's chroot isolation commits the mount points it makes for RUN (empty /dev, "
        "/proc, /sys, /run directories and empty /etc/hosts, /etc/hostname, "
        "/etc/resolv.conf files) when the image lacked them; BuildKit removes such stubs "
        "after each RUN (executor.MountStubsCleaner) and distill's sandbox never writes "
        "them into the image, since a runtime creates its mount points at container start.",
        _drop_run_stubs),
    "expose-as-buildkit": Deliberate(
        "BuildKit stores EXPOSE ports with the protocol lowercased and a range expanded into "
        "one key per port ('8080/TCP' -> '8080/tcp', '9000-9001/udp' -> '9000/udp', "
        "'9001/udp'; dockerfile2llb/convert_expose.go); buildah stores the words as "
        "written, and distill follows BuildKit.",
        _expose_as_buildkit),
    "context-setid-bits": Deliberate(
        "buildah clears the setuid and setgid bits of files and directories it copies from "
        "the build context (it keeps them from a stage, and keeps the sticky bit); BuildKit "
        "copies the context's mode as it is, and distill follows BuildKit."),
    "chmod-created-dest-dir": Deliberate(
        "BuildKit creates a missing COPY destination directory with the --chmod mode "
        "(fsutil copy: MkdirAll(dest, *mode) in prepareTargetDir); buildah creates it 0755, "
        "and distill follows BuildKit."),
    "oci-format-drops-docker-config": Deliberate(
        "buildah --format oci ignores what only Docker's image format holds: SHELL (its RUN, "
        "CMD and ENTRYPOINT keep /bin/sh -c), HEALTHCHECK and ONBUILD (neither stored, nor "
        "run by a stage built on it); BuildKit writes Shell, Healthcheck and OnBuild into the "
        "OCI config and honours them (dockerfile2llb), so such a case states BuildKit's "
        "values, written from the Dockerfile reference."),
    "env-order-in-place": Deliberate(
        "BuildKit replaces a variable that is already in Env where it stands (addEnv in "
        "dockerfile2llb); buildah re-appends every variable the Dockerfile set, so an "
        "inherited one (PATH) moves to the end; the case states BuildKit's order."),
}


def apply_deliberate(ours: ImageSnapshot, theirs: ImageSnapshot,
                     expect: dict[str, dict[str, Any]], reference: str) -> list[str]:
    """Apply the general rules and the case's ``expect`` that concern ``reference`` (the
    reference builder's name); return the names that applied."""
    applied = []
    for name, rule in DELIBERATE.items():
        if rule.reference == reference and rule.adjust is not None \
                and rule.adjust(ours, theirs):
            applied.append(name)
    for name, paths in expect.items():
        if name not in DELIBERATE or DELIBERATE[name].adjust is not None:
            raise KeyError(f"expect names {name!r}, which is not a per-case rule in DELIBERATE")
        if DELIBERATE[name].reference != reference:
            continue
        for key, value in paths.items():
            if key.startswith("config:"):
                theirs.config[key.removeprefix("config:")] = value
            else:
                theirs.tree[key].update(value)
        applied.append(name)
    return applied
