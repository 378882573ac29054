"""Mistakes and hostile input: a clear message that points at the Dockerfile, never a traceback.

A Dockerfile error reads

    error: PATH:LINE: message
     LINE | the instruction
    hint: ...            (sometimes)

and the exit status is non-zero. Hostile contexts and base layers (symlinks to /etc, to
'../../..', to a host path under /tmp) must never make distill read or write outside
the build context or the image.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RunDistill

pytestmark = pytest.mark.integration


def _context(tmp_path: Path, dockerfile: str, **files: str) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    for name, text in files.items():
        (ctx / name).write_text(text)
    return ctx


def assert_clean_failure(proc: subprocess.CompletedProcess[str]) -> str:
    """Non-zero exit, an `error:` line, no Python traceback; returns stderr."""
    assert proc.returncode != 0, f"expected failure:\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    assert re.search(r"^(distill: )?error: ", proc.stderr, re.M), proc.stderr
    return proc.stderr


def assert_points_at(proc: subprocess.CompletedProcess[str], dockerfile: Path, line: int,
                     *needles: str) -> str:
    """The error names PATH:LINE, shows that line's text, and mentions every needle."""
    err = assert_clean_failure(proc)
    lines = dockerfile.read_text().splitlines()
    assert 0 < line <= len(lines), f"{dockerfile} has no line {line}"
    text = lines[line - 1]
    pattern = rf"^error: {re.escape(str(dockerfile))}:{line}(-\d+)?: (?P<msg>.*)\n\s*{line} \| " \
              rf"{re.escape(text)}$"
    m = re.search(pattern, err, re.M)
    assert m, f"no 'error: {dockerfile}:{line}: ...' followed by ' {line} | {text}' in:\n{err}"
    for needle in needles:
        assert needle in err, f"{needle!r} not in:\n{err}"
    return m.group("msg")


def build(distill: RunDistill, ctx: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return distill("build", *args, str(ctx), check=False)


# -- Dockerfile mistakes ----------------------------------------------------------------

def test_typo_instruction(distill: RunDistill, busybox_image: str, tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM busybox\nCOPPY file /x\n", file="x")
    proc = build(distill, ctx)
    assert_points_at(proc, ctx / "Dockerfile", 2, "COPPY", "did you mean COPY?")
    assert "#1" not in proc.stderr, "a parse error is reported before anything runs"


def test_copy_missing_file(distill: RunDistill, busybox_image: str, tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM busybox\nRUN true\nCOPY missing.txt /x\n")
    msg = assert_points_at(build(distill, ctx), ctx / "Dockerfile", 3, "missing.txt")
    assert "not found" in msg


def test_copy_outside_context(distill: RunDistill, busybox_image: str, tmp_path: Path) -> None:
    (tmp_path / "outside").write_text("secret outside the context\n")
    ctx = _context(tmp_path, "FROM busybox\nCOPY ../outside /x\n")
    msg = assert_points_at(build(distill, ctx), ctx / "Dockerfile", 2)
    assert "outside the build context" in msg and "../outside" in msg


def test_failing_run(distill: RunDistill, busybox_image: str, tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM busybox\nRUN echo about to fail\nRUN exit 3\n")
    msg = assert_points_at(build(distill, ctx), ctx / "Dockerfile", 3, "exit code: 3")
    assert "exit 3" in msg


def test_failing_run_on_continued_lines(distill: RunDistill, busybox_image: str,
                                        tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM busybox\nRUN echo a \\\n    && exit 4\n")
    err = assert_clean_failure(build(distill, ctx))
    assert f"error: {ctx / 'Dockerfile'}:2-3: " in err and "exit code: 4" in err
    assert re.search(r"^\s*2 \| RUN echo a \\$", err, re.M)
    assert re.search(r"^\s*3 \|     && exit 4$", err, re.M)


def test_command_not_found(distill: RunDistill, busybox_image: str, tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM busybox\nRUN no-such-command-xyz\n")
    assert_points_at(build(distill, ctx), ctx / "Dockerfile", 2, "exit code: 127")


def test_unknown_instruction_flag(distill: RunDistill, busybox_image: str,
                                  tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM busybox AS build\nFROM busybox\nCOPY --frm=build /x /y\n")
    msg = assert_points_at(build(distill, ctx), ctx / "Dockerfile", 3, "did you mean --from?")
    assert "--frm" in msg


def test_add_of_a_missing_source(distill: RunDistill, busybox_image: str,
                                 tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM busybox\nRUN true\nADD nope.tar.gz /x/\n", file="x")
    assert_points_at(build(distill, ctx), ctx / "Dockerfile", 3, "nope.tar.gz", "not found")


def test_unsupported_run_flag(distill: RunDistill, busybox_image: str, tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM busybox\nRUN --security=insecure true\n")
    assert_points_at(build(distill, ctx), ctx / "Dockerfile", 2, "not supported by distill yet")


def test_bad_run_mount(distill: RunDistill, busybox_image: str, tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM busybox\nRUN --mount=type=nope,target=/c true\n")
    assert_points_at(build(distill, ctx), ctx / "Dockerfile", 2, "nope")


def test_unknown_base_image(distill: RunDistill, busybox_image: str, tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM busybox AS ok\nRUN true\nFROM no-such-image:9\nRUN true\n")
    assert_points_at(build(distill, ctx), ctx / "Dockerfile", 3, "no-such-image:9", "not found")


def test_copy_from_unknown_stage(distill: RunDistill, busybox_image: str,
                                 tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM busybox\nCOPY --from=nowhere /x /y\n")
    assert_points_at(build(distill, ctx), ctx / "Dockerfile", 2, "nowhere")


def test_unknown_user(distill: RunDistill, busybox_image: str, tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM busybox\nUSER ghost\nRUN true\n")
    assert_points_at(build(distill, ctx), ctx / "Dockerfile", 3, "ghost")


def test_empty_dockerfile_names_the_file(distill: RunDistill, busybox_image: str,
                                         tmp_path: Path) -> None:
    ctx = _context(tmp_path, "# only a comment\n")
    err = assert_clean_failure(build(distill, ctx))
    assert str(ctx / "Dockerfile") in err


# -- command-line mistakes --------------------------------------------------------------

def test_unknown_target(distill: RunDistill, busybox_image: str, tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM busybox AS base\nRUN true\nFROM base AS app\n")
    proc = build(distill, ctx, "--target", "nope")
    err = assert_clean_failure(proc)
    assert "'nope'" in err or '"nope"' in err
    assert "base" in err and "app" in err, "the hint lists the stages there are"
    assert "#1" not in err


def test_unknown_cli_flag(distill: RunDistill, busybox_image: str, tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM busybox\n")
    proc = build(distill, ctx, "--frobnicate")
    err = assert_clean_failure(proc)
    assert proc.returncode == 2
    assert "--frobnicate" in err


def test_missing_dockerfile(distill: RunDistill, busybox_image: str, tmp_path: Path) -> None:
    ctx = tmp_path / "empty-ctx"
    ctx.mkdir()
    err = assert_clean_failure(build(distill, ctx))
    assert str(ctx / "Dockerfile") in err and "not found" in err.lower()
    other = tmp_path / "nowhere" / "Dockerfile.prod"
    err = assert_clean_failure(build(distill, ctx, "-f", str(other)))
    assert str(other) in err


def test_missing_context(distill: RunDistill, tmp_path: Path) -> None:
    err = assert_clean_failure(build(distill, tmp_path / "no-such-dir"))
    assert "no-such-dir" in err


@pytest.mark.parametrize(("spec", "needle"), [
    ("type=tarball,dest={d}", "tarball"),
    ("type=oci", "dest"),
    ("type=oci,dest={d},colour=blue", "colour"),
    ("type=oci,dest={d},bogus", "bogus"),
    ("type=registry", "needs a name"),                 # a push needs a name (-t or name=)
    ("type=local,dest={d},push=true", "cannot push"),
])
def test_bad_output_spec(distill: RunDistill, busybox_image: str, tmp_path: Path,
                         spec: str, needle: str) -> None:
    ctx = _context(tmp_path, "FROM busybox\nRUN true\n")
    dest = tmp_path / "out"
    proc = build(distill, ctx, "--output", spec.format(d=dest))
    err = assert_clean_failure(proc)
    assert needle in err
    assert "#1" not in err, "a bad --output is rejected before the build starts"
    assert not dest.exists()


@pytest.mark.parametrize(("dockerfile", "spec", "needles"), [
    ("FROM base\n", "base=docker-image://alpine:3", ("alpine:3", "not found")),
    ("FROM base\n", "base=oci-layout://{missing}:1", ("not an OCI image layout",)),
    ("FROM base\n", "base=oci-layout://{layout}:no-such-tag", ("no-such-tag",)),
    ("FROM base\n", "base=oci-layout://{archive}", ("not read yet",)),
])
def test_bad_build_context(distill: RunDistill, busybox_image: str, tmp_path: Path,
                           dockerfile: str, spec: str, needles: tuple[str, ...]) -> None:
    layout = _busybox_layout(distill, tmp_path)
    # the layout itself is fine: with its tag it is a usable base
    (tmp_path / "ok").mkdir()
    ok = _context(tmp_path / "ok", dockerfile)
    distill("build", "--build-context", f"base=oci-layout://{layout}:1", str(ok))
    ctx = _context(tmp_path, dockerfile)
    archive = tmp_path / "archive.tar"
    archive.write_bytes(b"\0" * 1024)
    value = spec.format(missing=tmp_path / "missing", layout=layout, archive=archive)
    err = assert_clean_failure(build(distill, ctx, "--build-context", value))
    for needle in needles:
        assert needle in err, err


def _busybox_layout(distill: RunDistill, tmp_path: Path) -> Path:
    """busybox as an OCI layout directory (tag '1'), built from the store's busybox."""
    ctx = tmp_path / "bb-ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\n")
    dest = tmp_path / "bb-layout"
    distill("build", "-t", "bb:1", "--output", f"type=oci,dest={dest},tar=false", str(ctx))
    return dest


def test_build_context_error_points_at_from(distill: RunDistill, busybox_image: str,
                                            tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM busybox\nRUN true\nFROM base\n")
    proc = build(distill, ctx, "--build-context", f"base=oci-layout://{tmp_path / 'gone'}")
    assert_points_at(proc, ctx / "Dockerfile", 3, "not an OCI image layout")


def test_build_context_without_equals(distill: RunDistill, busybox_image: str,
                                      tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM busybox\n")
    err = assert_clean_failure(build(distill, ctx, "--build-context", "noequals"))
    assert "noequals" in err


# -- symlinks in the build context ------------------------------------------------------

@pytest.fixture
def hostile_context(tmp_path: Path) -> Path:
    """A context with evil -> /etc and evil2 -> ../../.. (and a decoy etc/ of its own)."""
    ctx = tmp_path / "a" / "b" / "ctx"
    ctx.mkdir(parents=True)
    (ctx / "evil").symlink_to("/etc")
    (ctx / "evil2").symlink_to("../../..")
    (ctx / "keep.txt").write_text("inside the context\n")
    return ctx


HOST_PASSWD = Path("/etc/passwd").read_bytes()


def test_symlink_to_etc_without_decoy(distill: RunDistill, busybox_image: str,
                                      hostile_context: Path, tmp_path: Path) -> None:
    ctx = hostile_context
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY evil/passwd /x\n")
    out = tmp_path / "out"
    proc = build(distill, ctx, "--output", f"type=local,dest={out}")
    if proc.returncode == 0:  # resolved inside the context: nothing may come from the host
        assert (out / "x").read_bytes() != HOST_PASSWD
    else:
        assert_points_at(proc, ctx / "Dockerfile", 2, "evil/passwd")
    assert not (out / "x").exists() or (out / "x").read_bytes() != HOST_PASSWD


def test_symlink_to_etc_resolves_inside_context(distill: RunDistill, busybox_image: str,
                                                hostile_context: Path, tmp_path: Path) -> None:
    ctx = hostile_context
    (ctx / "etc").mkdir()
    (ctx / "etc/passwd").write_text("decoy:x:0:0::/:/bin/sh\n")
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY evil/passwd /x\n")
    out = tmp_path / "out"
    distill("build", "--output", f"type=local,dest={out}", str(ctx))
    assert (out / "x").read_text() == "decoy:x:0:0::/:/bin/sh\n"


def test_symlink_up_and_out_stays_in_context(distill: RunDistill, busybox_image: str,
                                             hostile_context: Path, tmp_path: Path) -> None:
    ctx = hostile_context
    (tmp_path / "a" / "sibling-secret").write_text("outside\n")
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY evil2 /y/\n")
    out = tmp_path / "out"
    proc = build(distill, ctx, "--output", f"type=local,dest={out}")
    if proc.returncode != 0:
        assert_points_at(proc, ctx / "Dockerfile", 2)
        return
    copied = {p.name for p in (out / "y").iterdir()}
    assert copied <= {p.name for p in ctx.iterdir()}, copied
    assert "sibling-secret" not in copied and "b" not in copied and "a" not in copied
    assert (out / "y/keep.txt").read_text() == "inside the context\n"


def test_symlink_up_then_down_stays_in_context(distill: RunDistill, busybox_image: str,
                                               hostile_context: Path, tmp_path: Path) -> None:
    ctx = hostile_context
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY evil2/etc/passwd /z\n")
    out = tmp_path / "out"
    proc = build(distill, ctx, "--output", f"type=local,dest={out}")
    assert_points_at(proc, ctx / "Dockerfile", 2, "not found")
    assert not (out / "z").exists()


def test_symlink_inside_copied_dir_is_copied_as_link(distill: RunDistill, busybox_image: str,
                                                     hostile_context: Path,
                                                     tmp_path: Path) -> None:
    ctx = hostile_context
    (ctx / "dir").mkdir()
    (ctx / "dir/etc").symlink_to("/etc")
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY dir/ /d/\n")
    out = tmp_path / "out"
    distill("build", "--output", f"type=local,dest={out}", str(ctx))
    assert (out / "d/etc").is_symlink() and str((out / "d/etc").readlink()) == "/etc"


# -- symlinks in base layers ------------------------------------------------------------

def _rootfs_with(busybox_tar: Path, dest: Path,
                 extra: list[tuple[str, bytes, str, bytes]]) -> Path:
    """busybox_tar plus extra (name, tar type, linkname, data) members."""
    with tarfile.open(busybox_tar) as src, \
            tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as out:
        for member in src.getmembers():
            out.addfile(member, src.extractfile(member) if member.isfile() else None)
        for name, kind, link, data in extra:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.size, info.mode = kind, link, len(data), 0o644
            out.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return dest


@pytest.fixture
def host_paths() -> Iterator[list[Path]]:
    paths = [Path(f"/tmp/distill-hostpath-{uuid.uuid4().hex}") for _ in range(2)]
    yield paths
    for p in paths:
        assert not p.exists() and not p.is_symlink(), f"{p} was created on the host"


def test_base_symlink_to_host_path(distill: RunDistill, busybox_tar: Path, tmp_path: Path,
                                   host_paths: list[Path]) -> None:
    abs_target, rel_target = host_paths
    file_target = Path(str(rel_target) + "-file")
    base = _rootfs_with(busybox_tar, tmp_path / "base.tar", [
        ("danger", tarfile.SYMTYPE, str(abs_target), b""),
        ("danger2", tarfile.SYMTYPE, "../../../.." + str(rel_target), b""),
        ("danger3", tarfile.SYMTYPE, "../../../.." + str(file_target), b""),
    ])
    name = f"hostile-{uuid.uuid4().hex[:8]}:1"
    distill("import", str(base), name)
    ctx = _context(tmp_path, f"FROM {name}\n"
                             "COPY file /danger/x\n"
                             "COPY file /danger2/x\n"
                             "RUN echo run > /danger/y && mkdir -p /danger2/z "
                             "&& echo deep > /danger2/z/f\n"
                             # onto a link itself: written to its target, which resolves
                             # inside the root (as BuildKit's fs.RootPath does)
                             "COPY file /danger3\n",
                   file="payload\n")
    out = tmp_path / "out"
    distill("build", "--output", f"type=local,dest={out}", str(ctx))
    for p in host_paths:
        assert not p.exists(), f"{p} was written on the host"
    inside_abs = out / str(abs_target).lstrip("/")
    inside_rel = out / str(rel_target).lstrip("/")
    assert (inside_abs / "x").read_text() == "payload\n"
    assert (inside_abs / "y").read_text() == "run\n"
    assert (inside_rel / "x").read_text() == "payload\n"
    assert (inside_rel / "z/f").read_text() == "deep\n"
    assert (out / "danger").is_symlink() and str((out / "danger").readlink()) == str(abs_target)
    assert not file_target.exists(), f"{file_target} was written on the host"
    assert (out / str(file_target).lstrip("/")).read_text() == "payload\n"
    assert (out / "danger3").is_symlink()


@pytest.mark.parametrize("member", ["through-symlink", "dotdot", "absolute-hardlink"])
def test_hostile_layer_members(distill: RunDistill, busybox_tar: Path, tmp_path: Path,
                               host_paths: list[Path], member: str) -> None:
    """Layer tar members that try to leave the snapshot fail cleanly, writing nothing."""
    target = host_paths[0]
    extra = {
        "through-symlink": [("danger", tarfile.SYMTYPE, str(target), b""),
                            ("danger/pwned", tarfile.REGTYPE, "", b"pwned\n")],
        "dotdot": [("../../../../.." + str(target), tarfile.REGTYPE, "", b"pwned\n")],
        "absolute-hardlink": [("shadow", tarfile.LNKTYPE, "/etc/shadow", b"")],
    }[member]
    base = _rootfs_with(busybox_tar, tmp_path / "base.tar", extra)
    name = f"hostile-{uuid.uuid4().hex[:8]}:1"
    distill("import", str(base), name)
    ctx = _context(tmp_path, f"FROM {name}\nRUN true\n")
    err = assert_clean_failure(build(distill, ctx))
    assert f"error: {ctx / 'Dockerfile'}:" in err
    assert "layer" in err
    assert not target.exists()


def test_copy_tree_onto_symlinked_dir_keeps_the_image_intact(
        distill: RunDistill, busybox_tar: Path, tmp_path: Path) -> None:
    base = _rootfs_with(busybox_tar, tmp_path / "base.tar", [
        ("usr/lib", tarfile.DIRTYPE, "", b""),
        ("usr/lib/libold.so", tarfile.REGTYPE, "", b"old"),
        ("lib", tarfile.SYMTYPE, "usr/lib", b""),
    ])
    name = f"merged-usr-{uuid.uuid4().hex[:8]}:1"
    distill("import", str(base), name)
    ctx = _context(tmp_path, f"FROM {name}\nCOPY rootfs/ /\n")
    (ctx / "rootfs/lib").mkdir(parents=True)
    (ctx / "rootfs/lib/libnew.so").write_text("new")
    out = tmp_path / "out"
    proc = build(distill, ctx, "--output", f"type=local,dest={out}")
    if proc.returncode != 0:  # refusing, as BuildKit does, is fine
        assert_points_at(proc, ctx / "Dockerfile", 2, "lib")
        return
    assert (out / "lib").is_symlink(), "/lib -> usr/lib was replaced by a directory"
    assert (out / "usr/lib/libold.so").read_text() == "old"
    assert (out / "usr/lib/libnew.so").read_text() == "new"


# -- where the output goes -----------------------------------------------------------------

@pytest.mark.parametrize("bad_tag", ["has space", "", ":only-a-tag"])
def test_invalid_tag_is_rejected(distill: RunDistill, busybox_tar: Path, tmp_path: Path,
                                 bad_tag: str) -> None:
    root = tmp_path / "store"  # a store of its own: a bad name must not reach the shared one
    distill("import", str(busybox_tar), "busybox:latest", root=root)
    ctx = _context(tmp_path, "FROM busybox\n")
    err = assert_clean_failure(distill("build", "-t", bad_tag, str(ctx), root=root, check=False))
    assert "reference" in err or "tag" in err


def _unwritable_dest(tmp_path: Path, case: str) -> tuple[str, Path]:
    (tmp_path / "a-dir").mkdir()
    (tmp_path / "a-file").write_text("not a directory\n")
    return {
        "oci-tar-in-missing-dir": ("type=oci,dest={}", tmp_path / "missing/dir/image.tar"),
        "docker-in-missing-dir": ("type=docker,dest={}", tmp_path / "missing/dir/image.tar"),
        "oci-tar-onto-directory": ("type=oci,dest={}", tmp_path / "a-dir"),
        "local-onto-file": ("type=local,dest={}", tmp_path / "a-file"),
        "oci-dir-onto-file": ("type=oci,dest={},tar=false", tmp_path / "a-file"),
    }[case]


@pytest.mark.parametrize("case", ["oci-tar-in-missing-dir", "docker-in-missing-dir",
                                  "oci-tar-onto-directory", "local-onto-file",
                                  "oci-dir-onto-file"])
def test_unwritable_output_destination(distill: RunDistill, busybox_image: str,
                                       tmp_path: Path, case: str) -> None:
    spec, dest = _unwritable_dest(tmp_path, case)
    ctx = _context(tmp_path, "FROM busybox\nRUN true\n")
    proc = build(distill, ctx, "-t", "dest-test:1", "--output", spec.format(dest))
    if proc.returncode == 0:  # creating missing parent directories is fine too
        assert dest.is_file() and tarfile.is_tarfile(dest)
        return
    err = assert_clean_failure(proc)
    assert str(dest) in err
    assert not Path(f"{dest}.tmp").exists(), "a failed export leaves no temp file"


# -- destinations through symlinks made by the Dockerfile itself ---------------------------

def test_copy_into_a_dangling_directory_link(distill: RunDistill, busybox_image: str,
                                             tmp_path: Path) -> None:
    """COPY into DEST/ where DEST is a dangling link: the link's target (missing parents
    included) is made inside the root, as BuildKit's MkdirAll on the resolved path does;
    with --link the link itself is replaced."""
    ctx = _context(tmp_path, "FROM busybox\n"
                             "RUN ln -s /nope/y /l && mkdir /d && ln -s /d /dirlink "
                             "&& ln -s /nope2/z /l2\n"
                             "COPY f /l/\n"
                             "COPY tree /l2/sub\n"
                             "COPY --link f /dirlink\n", f="payload\n")
    (ctx / "tree").mkdir()
    (ctx / "tree/inner.txt").write_text("inner\n")
    out = tmp_path / "out"
    proc = build(distill, ctx, "--output", f"type=local,dest={out}")
    assert proc.returncode == 0, proc.stderr
    assert (out / "nope/y/f").read_text() == "payload\n"
    assert (out / "l").is_symlink()
    assert (out / "nope2/z/sub/inner.txt").read_text() == "inner\n"
    assert not (out / "dirlink").is_symlink() and (out / "dirlink").read_text() == "payload\n"
    assert list((out / "d").iterdir()) == []


def test_hostile_mount_point_and_long_names_fail_cleanly(distill: RunDistill,
                                                        busybox_image: str,
                                                        tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM busybox\nCOPY rootfs/ /\nRUN [\"/bin/true\"]\n")
    (ctx / "rootfs").mkdir()
    os.symlink("/etc/passwd/x", ctx / "rootfs/dev")     # /dev leads through a file
    proc = build(distill, ctx)
    assert_points_at(proc, ctx / "Dockerfile", 3, "not a directory")

    ctx2 = tmp_path / "long"
    ctx2.mkdir()
    (ctx2 / "Dockerfile").write_text("FROM busybox\nCOPY f /" + "a" * 300 + "\n")
    (ctx2 / "f").write_text("x")
    proc = build(distill, ctx2)
    assert_points_at(proc, ctx2 / "Dockerfile", 2, "too long")


def test_run_network_host_needs_the_entitlement(tmp_path: Path, distill: RunDistill,
                                                busybox_image: str) -> None:
    """buildx refuses RUN --network=host unless --allow network.host grants it; so do we."""
    (tmp_path / "Dockerfile").write_text(
        f"FROM {busybox_image}\nRUN --network=host cat /proc/net/dev > /devs\n")
    proc = distill("build", "--progress", "plain", str(tmp_path), check=False)
    assert proc.returncode == 1, proc.stderr
    assert "network.host" in proc.stderr and "Dockerfile:2" in proc.stderr
    assert "Traceback" not in proc.stderr
    granted = distill("build", "--progress", "plain", "--allow", "network.host",
                      "-o", str(tmp_path / "out"), str(tmp_path))
    assert granted.returncode == 0
    host_interfaces = len(Path("/proc/net/dev").read_text().splitlines()) - 2
    assert len((tmp_path / "out/devs").read_text().splitlines()) - 2 == host_interfaces
    unknown = distill("build", "--allow", "security.insecure", str(tmp_path), check=False)
    assert unknown.returncode != 0 and "not supported" in unknown.stderr


def test_copy_of_a_context_with_non_utf8_names(distill: RunDistill, busybox_image: str,
                                               tmp_path: Path) -> None:
    """Regression (issue 13): a context file whose name is not valid UTF-8 crashed
    ``COPY . /x/`` with a traceback. Names are bytes: copied as they are, into every
    output, and read back by umoci byte for byte (short, over tar's 100 bytes, a
    directory, a symlink and its target)."""
    from tests.helpers.readback import umoci_unpack

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {busybox_image}\nCOPY . /x/\nRUN find /x > /listing\n")
    names = [b"caf\xe9.txt", b"\xff" * 120, b"d\xe9/inner"]
    for name in names:
        path = os.fsencode(ctx) + b"/" + name
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(name)
    os.symlink(b"caf\xe9.txt", os.fsencode(ctx) + b"/l\xe9")
    layout = tmp_path / "layout"
    proc = distill("build", "--progress", "plain", "-o",
                   f"type=oci,dest={layout},tar=false,name=utf8:1", str(ctx))
    assert "Traceback" not in proc.stderr
    rootfs = umoci_unpack(layout, "1", tmp_path / "bundle")   # ref.name is the tag, as buildx
    for name in names:
        copied = os.fsencode(rootfs) + b"/x/" + name
        with open(copied, "rb") as f:
            assert f.read() == name
    assert os.readlink(os.fsencode(rootfs) + b"/x/l\xe9") == b"caf\xe9.txt"
    # and the RUN saw them (its listing is bytes too)
    assert b"caf\xe9.txt" in (rootfs / "listing").read_bytes()
