"""The differential cases: one directory each under ``cases/`` (Dockerfile + context files),
plus what a directory cannot hold in git (symlinks, hardlinks, build flags) declared here.

Every directory under ``cases/`` must have an entry in ``CASES`` and the other way round
(``test_every_case_is_declared`` checks). Context files are normalized before a build:
files 0644, directories 0755, owner root, every mtime ``CONTEXT_MTIME``; ``setup`` runs
after that (and its links get the same mtime).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CASES_DIR = Path(__file__).resolve().parent / "cases"

# Syntax newer than the reference builders on this machine (buildah 1.28, and the Dockerfile
# frontend built into Debian's dockerd 20.10, which is about dockerfile:1.2).
SYNTAX = {
    "heredoc": "heredocs in RUN and COPY (dockerfile:1.4)",
    "copy-link": "COPY --link (dockerfile:1.4)",
    "copy-exclude": "COPY --exclude (dockerfile:1.7-labs, 1.19)",
    "copy-parents": "COPY --parents (dockerfile:1.7-labs, 1.19)",
}

# 2001-09-09T01:46:40Z: older than any build, so a file keeping it proves a builder kept it.
CONTEXT_MTIME = 1_000_000_000


@dataclass(frozen=True)
class Case:
    name: str
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    setup: Callable[[Path], None] | None = None
    # BuildKit semantics buildah lacks, per path: {DELIBERATE rule: {path: {field: value}}}
    # or {rule: {"config:FIELD": value}}
    expect: dict[str, dict[str, Any]] = field(default_factory=dict)
    bug: str | None = None        # a distill bug: the case is a strict xfail with this reason
    bug_shows: str = ""           # ...and its failure report must contain this text
    # Dockerfile syntax the case uses that some reference builders lack (names in SYNTAX)...
    needs: frozenset[str] = frozenset()
    # ...and a Dockerfile in the case directory that means the same without that syntax,
    # written from the Dockerfile reference (its comments cite the section); such a builder
    # builds it instead.
    equivalent: str | None = None
    # RUN --mount=type=secret: id -> file in the context, passed as --secret id=ID,src=FILE
    secrets: dict[str, str] = field(default_factory=dict)

    @property
    def dir(self) -> Path:
        return CASES_DIR / self.name


def _symlinks(ctx: Path) -> None:
    tree = ctx / "tree"
    os.symlink("target.txt", tree / "link")
    os.symlink("nowhere", tree / "dangling")
    os.symlink("/etc/passwd", tree / "abs")
    os.symlink("sub", tree / "dirlink")
    os.symlink("../target.txt", tree / "sub" / "up")


def _empty_entries(ctx: Path) -> None:
    (ctx / "tree" / "empty").mkdir()
    (ctx / "tree" / "sub" / "empty-file").touch()


def _odd_names(ctx: Path) -> None:
    names = ctx / "names"
    (names / "with space.txt").write_text("space\n")
    (names / "\u00fcn\u00efc\u00f6d\u00e9 \u2603.txt").write_text("utf-8\n")
    (names / ("long-" + "x" * 195)).write_text("a 200-byte name\n")
    deep = names.joinpath(*[f"level{i:02d}-" + "d" * 20 for i in range(12)])
    deep.mkdir(parents=True)
    (deep / "leaf.txt").write_text("a path longer than 255 bytes\n")
    (names / "-dash").write_text("leading dash\n")


def _toplevel_symlink(ctx: Path) -> None:
    os.symlink("real.txt", ctx / "link.txt")


def _hardlinks(ctx: Path) -> None:
    tree = ctx / "tree"
    (tree / "sub").mkdir()
    os.link(tree / "a", tree / "b")
    os.link(tree / "a", tree / "sub" / "c")


def _modes(ctx: Path) -> None:
    """Modes git does not keep: an executable, a private file, a group-only directory."""
    os.chmod(ctx / "tree" / "a", 0o755)
    os.chmod(ctx / "tree" / "d" / "b", 0o600)
    os.chmod(ctx / "tree" / "d", 0o750)


def _setid_modes(ctx: Path) -> None:
    tree = ctx / "tree"
    os.chmod(tree / "suid", 0o4755)
    os.chmod(tree / "sgid-file", 0o2755)
    os.chmod(tree / "sgid-dir", 0o2775)
    os.chmod(tree / "sticky", 0o1777)


def _private_dir(ctx: Path) -> None:
    os.chmod(ctx / "private", 0o700)


def _dockerignore_modes(ctx: Path) -> None:
    os.chmod(ctx / "a.txt", 0o755)





DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


CASES: dict[str, Case] = {c.name: c for c in [
    Case("copy_dir_contents", setup=_empty_entries),
    Case("copy_odd_names", setup=_odd_names),
    Case("copy_through_symlinks"),
    Case("copy_file_dest"),
    Case("copy_multi_sources"),
    Case("copy_globs"),
    Case("copy_chown_numeric", setup=_modes),
    Case("copy_chown_name", setup=_modes),
    Case("copy_chmod", setup=_modes,
         expect={"chmod-created-dest-dir": {"tree751": {"mode": 0o751}}}),
    Case("copy_setid_modes", setup=_setid_modes,
         expect={"context-setid-bits": {
             "tree/suid": {"mode": 0o4755}, "tree/sgid-file": {"mode": 0o2755},
             "tree/sgid-dir": {"mode": 0o2775}, "top-suid": {"mode": 0o4755},
             "chowned/suid": {"mode": 0o4755}, "chowned/sgid-file": {"mode": 0o2755},
             "chowned/sgid-dir": {"mode": 0o2775}}}),
    Case("copy_dir_dest_meta", setup=_private_dir),
    Case("copy_from_owner"),
    Case("dockerignore", setup=_dockerignore_modes),
    Case("workdir"),
    Case("user_numeric_run"),
    Case("user_name_run"),
    Case("user_identity"),
    Case("whiteout_files"),
    Case("run_metadata_only"),
    Case("opaque_dir"),
    Case("symlink_copy", setup=_symlinks),
    Case("symlink_copy_toplevel", setup=_toplevel_symlink),
    Case("symlink_run"),
    Case("hardlink_run"),
    Case("hardlink_copy", setup=_hardlinks),
    Case("target_skips_broken", target="good"),
    Case("args_expansion"),
    Case("args_build_arg", build_args={"BASE": "busybox", "GLOBAL": "from-cli",
                                       "LOCAL": "from-cli", "NO_DEFAULT": "given",
                                       "NEVER_DECLARED": "x"}),
    Case("multistage_from_name"),
    Case("multistage_from_index"),
    Case("cmd_shell_form"),
    Case("cmd_exec_form"),
    Case("cmd_only"),
    Case("labels_expose", build_args={"PORT": "7000"}),
    Case("env_forms"),
    Case("env_replace_order",
         expect={"env-order-in-place": {"config:Env": [
             f"PATH=/opt/bin:{DEFAULT_PATH}", "FIRST=replaced", "SECOND=2", "THIRD=3"]}}),
    Case("expose_range"),
    Case("from_scratch"),
    Case("add_local_archive"),
    Case("stopsignal_volume"),
    # buildah (OCI format) drops SHELL, HEALTHCHECK and ONBUILD: these cases state BuildKit's
    # config, written from the Dockerfile reference (deliberate.py says why).
    Case("shell_instruction",
         expect={"oci-format-drops-docker-config": {
             "config:Shell": ["/bin/sh", "-e", "-c"],
             "config:Entrypoint": ["/bin/sh", "-e", "-c", 'exec echo "entry $0"'],
             "config:Cmd": ["/bin/sh", "-e", "-c", "the   cmd"]}}),
    Case("healthcheck_config",
         expect={"oci-format-drops-docker-config": {
             "config:Healthcheck": {"Test": ["CMD", "/bin/true", "exec form"],
                                    "Timeout": 10_000_000}}}),
    Case("onbuild_stage",
         expect={"oci-format-drops-docker-config": {
             "config:Env": [f"PATH={DEFAULT_PATH}", "TRIGGERED=yes"],
             "config:Labels": {"base": "1", "stage.triggered": "by yes", "child": "1"},
             "config:ExposedPorts": {"8080/tcp": {}},
             "config:Cmd": ["/bin/sh", "-c", "echo from trigger"],
             "config:OnBuild": ['RUN echo "only for images built on child"']}}),
]}
