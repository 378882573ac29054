"""Compare two OCI images the way a user would notice: their files and their run config.

``snapshot_image`` unpacks an image from an OCI layout with umoci (no code shared with
either builder) into plain data: the ``tree_snapshot`` of the root filesystem, the mtime of
every path, and the config fields a container runtime reads. ``compare`` lists every
difference as one readable line; an empty list means the images are the same.

What is compared
  * every path: type, mode (with setuid/setgid/sticky), uid, gid, size, sha256 of files,
    symlink targets, device numbers, and hardlink groups (paths sharing one inode);
  * mtimes of non-directories, but only where one side's mtime predates the builds
    (``pinned_before``): such a time came from the base image or the build context, so a
    builder must have kept it. Times a RUN step produced are the build's clock and differ
    between any two builds; directory mtimes change whenever an entry is added or removed
    and depend on the order a builder writes them in, so neither is compared;
  * the config fields in ``CONFIG_FIELDS`` (Env in order, Entrypoint, Cmd, User,
    WorkingDir, Labels, ExposedPorts, Volumes, StopSignal), Docker's extensions in
    ``DOCKER_FIELDS`` (Healthcheck, Shell, OnBuild: read from the raw config, since
    skopeo's OCI view drops them) and os/architecture/author. An absent
    field, null, and an empty list or map are the same thing to a runtime and compare
    equal. History, created dates, rootfs diff_ids and layer boundaries are ignored: the
    builders may split the same filesystem into different layers.
  * neither tree may hold an unapplied whiteout (``.wh.*``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers.readback import ToolError, skopeo_inspect, tree_snapshot, umoci_unpack
from tests.helpers.rootless import ROOTLESS

REPO = Path(__file__).resolve().parents[2]

CONFIG_FIELDS = ("Env", "Entrypoint", "Cmd", "User", "WorkingDir", "Labels", "ExposedPorts",
                 "Volumes", "StopSignal", "Healthcheck", "Shell", "OnBuild")
DOCKER_FIELDS = ("Healthcheck", "Shell", "OnBuild")   # not in skopeo's OCI view of a config
TOP_FIELDS = ("os", "architecture", "author")
TEXT_LIMIT = 2048    # files up to this size that are text are shown in full in a difference
TREE_FIELDS = ("type", "mode", "uid", "gid", "size", "sha256", "target", "rdev", "hardlink")


@dataclass
class ImageSnapshot:
    """An image reduced to comparable data."""

    tree: dict[str, dict[str, Any]]
    mtimes: dict[str, int]                      # path -> mtime in whole seconds
    config: dict[str, Any]                      # CONFIG_FIELDS + TOP_FIELDS, normalized
    texts: dict[str, str] = field(default_factory=dict)  # small text files, for messages


def _normalize(value: Any) -> Any:
    return None if value in (None, [], {}, "") else value


def image_config(layout_dir: Path, ref: str, raw_config: Path | None = None) -> dict[str, Any]:
    """The compared config fields of ``oci:LAYOUT:REF`` as skopeo reads them.

    Docker's extensions are read from the raw config blob, or from ``raw_config`` when the
    layout was converted from a Docker archive (that conversion drops them)."""
    full = skopeo_inspect(layout_dir, ref)["config"]
    runtime = full.get("config") or {}
    out = {k: _normalize(runtime.get(k)) for k in CONFIG_FIELDS if k not in DOCKER_FIELDS}
    out.update({k: _normalize(full.get(k)) for k in TOP_FIELDS})
    if raw_config is not None:
        raw = json.loads(raw_config.read_bytes())
    else:
        argv = ["skopeo", "inspect", "--config", "--raw", f"oci:{layout_dir}:{ref}"]
        proc = subprocess.run(argv, capture_output=True, check=False)
        if proc.returncode != 0:
            raise ToolError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.decode()}")
        raw = json.loads(proc.stdout)
    out.update({k: _normalize((raw.get("config") or {}).get(k)) for k in DOCKER_FIELDS})
    return out


def snapshot_image(layout_dir: Path, ref: str, workdir: Path,
                   raw_config: Path | None = None) -> ImageSnapshot:
    """Unpack ``LAYOUT:REF`` under ``workdir`` (a new directory) and describe it
    (``raw_config``: see ``image_config``)."""
    if ROOTLESS:
        return _snapshot_as_namespace_root(layout_dir, ref, workdir, raw_config)
    rootfs = umoci_unpack(layout_dir, ref, Path(workdir))
    tree = tree_snapshot(rootfs)
    mtimes = {rel: int(os.lstat(rootfs / rel if rel != "." else rootfs).st_mtime)
              for rel in tree}
    texts = {}
    for rel, entry in tree.items():
        if entry["type"] == "file" and entry["size"] <= TEXT_LIMIT:
            try:
                texts[rel] = (rootfs / rel).read_bytes().decode()
            except UnicodeDecodeError:
                pass
    return ImageSnapshot(tree, mtimes, image_config(layout_dir, ref, raw_config), texts)


_IN_NAMESPACE = """\
import dataclasses, json, sys
from pathlib import Path
from tests.helpers.compare import snapshot_image
raw = Path(sys.argv[4]) if sys.argv[4] else None
print(json.dumps(dataclasses.asdict(snapshot_image(Path(sys.argv[1]), sys.argv[2],
                                                   Path(sys.argv[3]), raw))))
"""


def _snapshot_as_namespace_root(layout_dir: Path, ref: str, workdir: Path,
                                raw_config: Path | None) -> ImageSnapshot:
    """Rootless: umoci unpacked as root of a user namespace like distill's own (the user
    and its subordinate ids), where it gives every file its owner and reads every file;
    as the user, ``umoci --rootless`` would make every file the user's, hiding owners."""
    argv = ["unshare", "--map-auto", "--map-root-user", sys.executable, "-c", _IN_NAMESPACE,
            str(layout_dir), ref, str(workdir), str(raw_config or "")]
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, check=False)
    if proc.returncode != 0:
        raise ToolError(f"snapshot in a user namespace failed: {proc.stderr[-3000:]}")
    return ImageSnapshot(**json.loads(proc.stdout))


def _show(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return json.dumps(value, sort_keys=True)


def _describe(entry: dict[str, Any]) -> str:
    text = f"{entry['type']} {entry['mode']:04o} {entry['uid']}:{entry['gid']}"
    if entry["type"] == "file":
        text += f" {entry['size']}B"
    if entry["target"] is not None:
        text += f" -> {entry['target']}"
    if entry["hardlink"] is not None:
        text += f" (hardlink group {entry['hardlink']})"
    return text


def compare(ours: ImageSnapshot, theirs: ImageSnapshot, *, pinned_before: float,
            names: tuple[str, str] = ("distill", "buildah")) -> list[str]:
    """Every difference between two snapshots, one line each (empty: equal)."""
    a_name, b_name = names
    width = max(len(a_name), len(b_name))
    lines: list[str] = []
    for side, snap in ((a_name, ours), (b_name, theirs)):
        for rel in snap.tree:
            if os.path.basename(rel).startswith(".wh."):
                lines.append(f"tree   /{rel}: unapplied whiteout in the {side} image")
    for rel in sorted(set(ours.tree) | set(theirs.tree)):
        shown = "/" if rel == "." else "/" + rel
        a, b = ours.tree.get(rel), theirs.tree.get(rel)
        if a is None:
            lines.append(f"tree   {shown}: only in {b_name}: {_describe(theirs.tree[rel])}")
            continue
        if b is None:
            lines.append(f"tree   {shown}: only in {a_name}: {_describe(a)}")
            continue
        for key in TREE_FIELDS:
            if a[key] != b[key]:
                va, vb = a[key], b[key]
                if key == "mode":
                    va, vb = f"{va:04o}", f"{vb:04o}"
                if key == "sha256" and rel in ours.texts and rel in theirs.texts:
                    lines.append(f"tree   {shown}: content:\n"
                                 f"    {a_name:<{width}} {ours.texts[rel]!r}\n"
                                 f"    {b_name:<{width}} {theirs.texts[rel]!r}")
                    continue
                if key == "size" and rel in ours.texts and rel in theirs.texts:
                    continue   # the content line says it all
                lines.append(f"tree   {shown}: {key}: {va} ({a_name}) != {vb} ({b_name})")
        if a["type"] != "dir" and a["type"] == b["type"]:
            ma, mb = ours.mtimes.get(rel), theirs.mtimes.get(rel)
            if ma is not None and mb is not None and ma != mb and min(ma, mb) < pinned_before:
                lines.append(f"tree   {shown}: mtime: {ma} ({a_name}) != {mb} ({b_name}) "
                             "(a time from the base or the context must be kept)")
    for key in (*TOP_FIELDS, *CONFIG_FIELDS):
        va, vb = ours.config.get(key), theirs.config.get(key)
        if va != vb:
            lines.append(f"config {key}:\n    {a_name:<{width}} {_show(va)}\n"
                         f"    {b_name:<{width}} {_show(vb)}")
    return lines


def format_report(title: str, lines: list[str], notes: list[str],
                  reference: str = "buildah") -> str:
    """A failure message: the title, each difference, and the deliberate rules applied."""
    out = [f"{title}: {len(lines)} difference(s)"]
    out += [f"  {line}" for line in lines]
    if notes:
        out.append(f"(the {reference} side was first adjusted to BuildKit's semantics by these "
                   "deliberate differences: " + ", ".join(notes) + ")")
    return "\n".join(out)


def is_empty_stub(entry: dict[str, Any] | None) -> bool:
    """An empty regular file, or a directory (emptiness checked by the caller's tree)."""
    return entry is not None and (entry["type"] == "dir" or
                                  (entry["type"] == "file" and entry["size"] == 0))


def children(tree: dict[str, dict[str, Any]], rel: str) -> list[str]:
    prefix = "" if rel == "." else rel + "/"
    return [p for p in tree if p != rel and p.startswith(prefix)]
