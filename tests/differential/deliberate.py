"""Differences between distill and buildah that are deliberate, one sentence each.

distill follows BuildKit (``docker buildx build``). Where buildah's semantics differ from
BuildKit's, the buildah snapshot is turned into what BuildKit would give before comparing:
either by a general rule (``adjust``), or, where only the case knows which paths are
concerned, by the case's ``expect`` (``{rule name: {path: {field: value}}}``, or
``{rule name: {"config:FIELD": value}}`` for a config field; see cases.py). Every rule
is named in ``DELIBERATE`` with its reason, and a failure message lists the rules that
were applied, so nothing is loosened silently. Any other difference is a bug in one of
the builders.

The BuildKit we can run is the one inside Debian's dockerd 20.10 (BuildKit 0.8); distill
follows today's BuildKit. Where BuildKit changed since, a rule for the reference
"BuildKit" names the release that changed it.

A path's ``expect`` value sets tree fields (``type``, ``mode``, ``uid``...); ``text``
sets a file's content (size and sha256 follow), ``mtime`` its time; a path missing from
the reference's tree needs every field; ``None`` removes the path.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.helpers.compare import ImageSnapshot, children, is_empty_stub

# Mount points buildah's chroot isolation creates for a RUN when the image lacks them and
# BuildKit does not leave behind (it keeps /dev, /proc and /sys, as buildah does).
RUN_STUBS = ("run", "etc/hosts", "etc/hostname", "etc/resolv.conf")

Adjust = Callable[[ImageSnapshot, ImageSnapshot], bool]


@dataclass(frozen=True)
class Deliberate:
    why: str
    # General rule: adjusts the (distill, buildah) snapshots, True if it changed anything.
    # None: the rule is applied only where a case's ``expect`` names it.
    adjust: Adjust | None = None
    references: tuple[str, ...] = ("buildah",)   # the reference builders it concerns


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
        "buildah's chroot isolation commits the mount points it makes for RUN when the image "
        "lacked them: an empty /run directory and empty /etc/hosts, /etc/hostname, "
        "/etc/resolv.conf files; BuildKit removes the /etc/hosts and /etc/resolv.conf stubs "
        "after each RUN (executor/stubs.go MountStubsCleaner) and makes no /run or "
        "/etc/hostname (it keeps the /dev, /proc and /sys runc creates, as distill does).",
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
        "(fsutil copy: MkdirAll(dest, *mode) in prepareTargetDir, fsutil PR #228, in BuildKit "
        "0.21); buildah and BuildKit 0.8 create it 0755, and distill follows BuildKit.",
        references=("buildah", "BuildKit")),
    "chmod-special-bits": Deliberate(
        "BuildKit 0.13 and later keep setuid, setgid and sticky bits given to --chmod "
        "(fsutil copy_linux.go, PR #168); BuildKit 0.8 masked --chmod with 0777, and "
        "distill follows today's BuildKit.", references=("BuildKit",)),
    "primary-gid-in-groups": Deliberate(
        "BuildKit 0.11.4 and later put the primary gid in a RUN's supplementary groups, for "
        "root too (executor/oci/user.go ensureAdditionalGids, PR #3651, CVE-2023-25173); "
        "BuildKit 0.8 gave only the /etc/group memberships, and distill follows today's "
        "BuildKit, so the case states the `id` output BuildKit gives now.",
        references=("BuildKit",)),
    "copy-onto-symlink": Deliberate(
        "BuildKit resolves a COPY destination in full inside the root (fsutil Copy: "
        "fs.RootPath(dstRoot, dst)), so a file copied onto a symlink is written to the "
        "link's target and the link stays; buildah replaces the link with the file, and "
        "distill follows BuildKit."),
    "arg-order-and-inheritance": Deliberate(
        "BuildKit keeps one ordered environment that ENV and ARG both set (dispatchArg and "
        "dispatchEnv call AddEnv), so an ARG with a value declared after an ENV of the same "
        "name wins for ${...} and RUN (the image's Env keeps the ENV value), and a stage "
        "built FROM another stage inherits that stage's ARG values under its Env "
        "(dispatchState.init; the Dockerfile reference, \"Scope\", since moby/buildkit#5381); "
        "buildah 1.28 lets ENV win and starts every stage without ARGs, and distill follows "
        "BuildKit."),
    "platform-args-in-global-defaults": Deliberate(
        "BuildKit expands the predefined platform ARGs (TARGETPLATFORM, BUILDARCH...) in the "
        "default of a global ARG, as anywhere in the global scope; buildah 1.28 leaves them "
        "empty there, and distill follows BuildKit."),
    "proxy-args-as-buildkit": Deliberate(
        "BuildKit gives a RUN each proxy build arg (http_proxy, https_proxy, ftp_proxy, "
        "no_proxy, all_proxy, in any case) under both its upper- and lower-case name "
        "(llbsolver proxyEnvList) and never expands them in the Dockerfile without an ARG "
        "line; buildah 1.28 sets only the name given and expands them in ENV and LABEL, and "
        "distill follows BuildKit."),
    "mount-target-removed": Deliberate(
        "buildah 1.28 deletes the image's directory (with its files) that a RUN --mount "
        "covered (containers/buildah#4927, #4739); BuildKit leaves the image's directory as "
        "it was, and distill follows BuildKit."),
    "ssh-mount-as-buildkit": Deliberate(
        "buildah 1.28 gives a forwarded ssh agent socket mode 0620 and leaves an empty file "
        "in the image where a RUN --mount=type=ssh target was; BuildKit's socket is 0600 "
        "(the ssh mount's default mode) and its stub is removed, and distill follows "
        "BuildKit."),
    "scratch-workdir": Deliberate(
        "BuildKit starts a FROM scratch stage with WorkingDir \"/\" (dockerfile2llb "
        "emptyImage), so the image config says so; buildah leaves it empty, and distill "
        "follows BuildKit."),
    "mount-target-stubs": Deliberate(
        "BuildKit 0.11 and later remove the empty directories a RUN --mount target needed, "
        "the target and every parent the run created (executor/stubs.go, PR #3314); buildah "
        "keeps the parents and BuildKit 0.8 kept them all; distill follows today's BuildKit.",
        references=("buildah", "BuildKit")),
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


def _expect_path(theirs: ImageSnapshot, rel: str, value: dict[str, Any] | None) -> None:
    if value is None:
        theirs.tree.pop(rel, None)
        theirs.mtimes.pop(rel, None)
        theirs.texts.pop(rel, None)
        return
    fields = dict(value)
    if "mtime" in fields:
        theirs.mtimes[rel] = fields.pop("mtime")
    if "text" in fields:
        data = fields.pop("text").encode()
        fields.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
        theirs.texts[rel] = data.decode()
    theirs.tree.setdefault(rel, {}).update(fields)


def apply_deliberate(ours: ImageSnapshot, theirs: ImageSnapshot,
                     expect: dict[str, dict[str, Any]], reference: str) -> list[str]:
    """Apply the general rules and the case's ``expect`` that concern ``reference`` (the
    reference builder's name); return the names that applied."""
    applied = []
    for name, rule in DELIBERATE.items():
        if reference in rule.references and rule.adjust is not None \
                and rule.adjust(ours, theirs):
            applied.append(name)
    for name, paths in expect.items():
        if name not in DELIBERATE or DELIBERATE[name].adjust is not None:
            raise KeyError(f"expect names {name!r}, which is not a per-case rule in DELIBERATE")
        if reference not in DELIBERATE[name].references:
            continue
        for key, value in paths.items():
            if key.startswith("config:"):
                theirs.config[key.removeprefix("config:")] = value
            else:
                _expect_path(theirs, key, value)
        applied.append(name)
    return applied
