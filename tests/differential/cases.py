"""The differential cases: one directory each under ``cases/`` (Dockerfile + context files),
plus what a directory cannot hold in git (symlinks, hardlinks, build flags) declared here.

Every directory under ``cases/`` must have an entry in ``CASES`` and the other way round
(``test_every_case_is_declared`` checks). Context files are normalized before a build:
files 0644, directories 0755, owner root, every mtime ``CONTEXT_MTIME``; ``setup`` runs
after that (and its links get the same mtime).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
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
    "cache-sharing-private": "RUN --mount=type=cache,sharing=private (buildah 1.28 rejects it)",
    "bind-rw": "RUN --mount=type=bind,rw (buildah 1.28 writes through to the context or stage)",
    "relative-mount-target": "RUN --mount=...,target=RELATIVE (buildah 1.28 rejects it)",
    "run-network": "RUN --network (dockerfile:1.3; labs-only in 1.2, rejected by buildah 1.28)",
    "add-checksum": "ADD --checksum (dockerfile:1.6)",
    "add-git": "ADD of a git repository (dockerfile:1.5)",
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
    # RUN --mount=type=ssh: every builder gets --ssh default=SOCKET of one ssh-agent
    ssh: bool = False
    # ADD of URLs: the context's http/ directory is served on 127.0.0.1 during the builds,
    # its address passed as the build arg HTTP_BASE (http://127.0.0.1:PORT)
    http: bool = False

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


def _gone(*paths: str) -> dict[str, None]:
    """``expect`` for paths the reference leaves behind and today's BuildKit removes."""
    return dict.fromkeys(paths)


_DIR = {"type": "dir", "uid": 0, "gid": 0, "size": 0, "sha256": None, "target": None,
        "rdev": None, "hardlink": None}
_OWN = {"type": "file", "mode": 0o644, "uid": 0, "gid": 0, "text": "own\n", "target": None,
        "rdev": None, "hardlink": None}
# The machine's architecture as the platform ARGs name it (linux/amd64, linux/arm64).
_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def _git_repo(ctx: Path) -> None:
    """http/repo.git: a bare repository served by git's dumb HTTP protocol (tag v1, then one
    more commit on main), and expected/ holding the trees an ADD of it gives."""
    work = ctx / "repo-work"
    files_v1 = {"README": "v1\n", "sub/inner.txt": "inner\n", "sub/tool.sh": "#!/bin/sh\n"}
    for rel, text in files_v1.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(text)
    os.chmod(work / "sub/tool.sh", 0o755)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-C", str(work)]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    subprocess.run([*git, "tag", "v1"], check=True)
    (work / "README").write_text("v2\n")
    (work / "new.txt").write_text("added in v2\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "two"], check=True)
    bare = ctx / "http" / "repo.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    subprocess.run(["git", "-C", str(bare), "update-server-info"], check=True)
    shutil.rmtree(work / ".git")
    (ctx / "expected").mkdir()
    shutil.copytree(work, ctx / "expected" / "head")
    shutil.copytree(work / "sub", ctx / "expected" / "v1-sub")
    shutil.rmtree(work)


def _parents_modes(ctx: Path) -> None:
    """A parent directory --parents must recreate with its mode."""
    os.chmod(ctx / "priv", 0o750)





DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


CASES: dict[str, Case] = {c.name: c for c in [
    Case("copy_dir_contents", setup=_empty_entries),
    Case("copy_odd_names", setup=_odd_names),
    Case("copy_through_symlinks",
         expect={"copy-onto-symlink": {
             "bin/vi": {"type": "symlink", "mode": 0o777, "size": 7, "sha256": None,
                        "target": "busybox", "mtime": 0},
             "bin/busybox": {"type": "file", "mode": 0o644, "text": "b\n",
                             "mtime": CONTEXT_MTIME},
             "dangling-file": {"type": "symlink", "mode": 0o777, "size": 13, "sha256": None,
                               "target": "/made-by-copy"},
             "made-by-copy/a.txt": None,    # buildah makes a directory there
             "made-by-copy": {"type": "file", "mode": 0o644, "uid": 0, "gid": 0,
                              "text": "a\n", "target": None, "rdev": None,
                              "hardlink": None, "mtime": CONTEXT_MTIME}}}),
    Case("copy_file_dest"),
    Case("copy_multi_sources"),
    Case("copy_globs"),
    Case("copy_chown_numeric", setup=_modes),
    Case("copy_chown_name", setup=_modes),
    Case("copy_chmod", setup=_modes,
         expect={"chmod-created-dest-dir": {"tree751": {"mode": 0o751}},
                 "chmod-special-bits": {"setuid": {"mode": 0o4755}}}),
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
    Case("user_identity",
         expect={"primary-gid-in-groups": {
             "ids/app": {"text": "uid=1000(app) gid=1000(app) groups=50(staff),1000(app)\n"},
             "ids/uid1000": {"text": "uid=1000(app) gid=1000(app) groups=50(staff),1000(app)\n"},
             "ids/uid-gid": {"text": "uid=1000(app) gid=1000(app) groups=1000(app)\n"},
             "ids/app-staff": {"text": "uid=1000(app) gid=50(staff) groups=50(staff)\n"},
             "ids/root": {"text": "uid=0(root) gid=0(root) groups=0(root)\n"}}}),
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
    Case("from_scratch", expect={"scratch-workdir": {"config:WorkingDir": "/"}}),
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
    # Syntax the reference builders lack: each such case has a Dockerfile.equivalent.
    Case("heredoc_run", needs=frozenset({"heredoc"}), equivalent="Dockerfile.equivalent"),
    Case("heredoc_copy", needs=frozenset({"heredoc"}), equivalent="Dockerfile.equivalent"),
    Case("copy_link", needs=frozenset({"copy-link"}), equivalent="Dockerfile.equivalent"),
    Case("copy_exclude", needs=frozenset({"copy-exclude"}),
         equivalent="Dockerfile.equivalent"),
    Case("copy_parents", setup=_parents_modes, needs=frozenset({"copy-parents"}),
         equivalent="Dockerfile.equivalent"),
    Case("run_network", needs=frozenset({"run-network"}), equivalent="Dockerfile.equivalent"),
    # RUN --mount: both references leave directories made for mount targets (BuildKit 0.8
    # all of them, buildah the parents), which today's BuildKit removes.
    Case("run_mount_cache", needs=frozenset({"cache-sharing-private"}),
         equivalent="Dockerfile.equivalent",
         expect={"mount-target-stubs": _gone("cache", "seen", "owned",
                                             "var/differential-cache-by-target")}),
    Case("run_mount_bind", expect={"mount-target-stubs": _gone("ctx", "data", "stage")}),
    Case("run_mount_bind_rw", needs=frozenset({"bind-rw"}), equivalent="Dockerfile.equivalent",
         expect={"mount-target-stubs": _gone("rw", "again", "stage-rw",
                                             "rw-source", "stage-source")}),
    Case("run_mount_tmpfs", expect={"mount-target-stubs": _gone("scratch", "home/app/tmpfs")}),
    Case("run_mount_secret", secrets={"tok": "token.txt"},
         expect={"mount-target-stubs": _gone("run", "run/secrets", "etc/app")}),
    # buildah 1.28 deletes a directory of the image used as a mount target (buildah#4927).
    Case("run_mount_targets", needs=frozenset({"relative-mount-target"}),
         equivalent="Dockerfile.equivalent",
         expect={"mount-target-stubs": _gone("new", "new/deeper", "new/deeper/mnt", "w/rel"),
                 "mount-target-removed": {
                     "keep/cache": {**_DIR, "mode": 0o755}, "keep/cache/own.txt": _OWN,
                     "keep/bind": {**_DIR, "mode": 0o755}, "keep/bind/own.txt": _OWN,
                     "keep/tmpfs": {**_DIR, "mode": 0o700}, "keep/tmpfs/own.txt": _OWN}}),
    Case("run_mount_ssh", ssh=True,
         expect={"mount-target-stubs": _gone("run", "run/buildkit"),
                 "ssh-mount-as-buildkit": {
                     "out/default.txt": {"text": "/run/buildkit/ssh_agent.0\n600 0:0 socket\n"},
                     "out/tmp-after.txt": {"text": ""}, "tmp/agent.sock": None}}),
    Case("add_url", http=True, needs=frozenset({"add-checksum"}),
         equivalent="Dockerfile.equivalent"),
    Case("add_git", http=True, setup=_git_repo, needs=frozenset({"add-git"}),
         equivalent="Dockerfile.equivalent"),
    # Build variables.
    Case("args_scoping", build_args={"P": "cli-p", "EMPTY_CLI": "", "UNDECLARED": "leak"}),
    # BuildKit's order of ARG and ENV, and ARGs inherited by a stage built on a stage;
    # buildah 1.28 does neither.
    Case("args_stage_order", expect={"arg-order-and-inheritance": {
        "out/base.txt": {"text": "W=arg-w X=env-x\n"},
        "out/child.txt": {"text": "W=env-w INHERITED=from-base SHADOWED=env\n"},
        "config:Env": [f"PATH={DEFAULT_PATH}", "W=env-w", "X=env-x", "SHADOWED=env",
                       "AFTER_W=arg-w"],
        "config:Labels": {"inherited": "from-base", "w": "arg-w"}}}),
    # buildah 1.28 does not expand the platform ARGs in a global ARG's default.
    Case("platform_args", expect={"platform-args-in-global-defaults": {
        "out/declared.txt": {"text": f"TARGETPLATFORM=linux/{_ARCH}\nTARGETOS=linux\n"
                             f"TARGETARCH={_ARCH}\nTARGETVARIANT=[]\n"
                             f"BUILDPLATFORM=linux/{_ARCH}\nBUILDOS=linux\n"
                             f"BUILDARCH={_ARCH}\nGLOBAL_PLATFORM=linux/{_ARCH}\n"}}}),
    # buildah 1.28 sets only the spelling given, and expands proxy args in ENV and LABEL.
    Case("proxy_args", build_args={"HTTP_PROXY": "http://proxy.example:3128",
                                   "no_proxy": "localhost,.example"},
         expect={"proxy-args-as-buildkit": {
             "out/run-env.txt": {"text": "HTTP_PROXY=http://proxy.example:3128\n"
                                 "NO_PROXY=localhost,.example\n"
                                 "http_proxy=http://proxy.example:3128\n"
                                 "no_proxy=localhost,.example\n"},
             "config:Env": [f"PATH={DEFAULT_PATH}", "SEEN_BY_BUILDER=[]"],
             "config:Labels": {"proxy": "[]"}}}),
]}
