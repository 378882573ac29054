"""distill.dockerfile.kernel: values checked before they reach a syscall (paths, argv,
environment, ids), and the places that use it: COPY sources and destinations, WORKDIR,
RUN --mount, chown owners, stage names, error rendering and config JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.builder.copy import CopyOptions, copy_sources
from distill.builder.sources import Source, resolve_parents_glob, resolve_sources
from distill.cli.render import printable, render_error
from distill.dockerfile.kernel import (
    MAX_ARG_STRLEN,
    MAX_ID,
    NAME_MAX,
    PATH_MAX,
    check_id,
    check_owner,
    check_path,
    check_process,
    shown,
)
from distill.dockerfile.mounts import parse_mount
from distill.dockerfile.parser import parse
from distill.dockerfile.ports import parse_ports
from distill.dockerfile.typed import build_dockerfile
from distill.errors import DistillError, DockerfileError, SourceLocation
from distill.oci.descriptor import canonical_json

# -- shown -----------------------------------------------------------------------------

def test_shown_escapes_and_cuts() -> None:
    assert shown("a\0b") == r"'a\x00b'"
    assert shown("\x1b[2J") == r"'\x1b[2J'"
    long = "x" * 1000
    assert shown(long) == repr("x" * 64) + "... (1000 bytes)"
    assert shown("é" * 100, 10) == repr("é" * 10) + "... (200 bytes)"  # bytes, not chars


# -- check_path ------------------------------------------------------------------------

@pytest.mark.parametrize("path", [
    "/", "relative/path", "/" + "n" * NAME_MAX, "/" + "é" * (NAME_MAX // 2),
    "/" + "/".join(["d" * 200] * 20),                    # 4020 bytes: under PATH_MAX
    "/x\udcff",                                          # a non-UTF-8 byte is a fine name
])
def test_check_path_accepts(path: str) -> None:
    assert check_path(path, "WORKDIR") == path


@pytest.mark.parametrize(("path", "needles"), [
    ("/a\0b", ("WORKDIR '/a\\x00b'", "NUL byte")),
    ("\0", ("NUL byte",)),
    ("/" + "n" * (NAME_MAX + 1), ("too long", "256 bytes", "at most 255 (NAME_MAX)")),
    ("/" + "é" * 128, ("too long", "256 bytes", "NAME_MAX")),   # 128 chars, 256 bytes
    ("/" + "a/" * 2048, ("too long", "4097 bytes", "at most 4095 (PATH_MAX)")),
    ("/" + "a" * (PATH_MAX - 1), ("too long",)),
])
def test_check_path_rejects(path: str, needles: tuple[str, ...]) -> None:
    with pytest.raises(DockerfileError) as err:
        check_path(path, "WORKDIR")
    for needle in needles:
        assert needle in err.value.message
    assert len(err.value.message) < 400, "a long value is cut in the message"
    assert "\0" not in err.value.message


def test_check_path_for_patterns_checks_only_nul() -> None:
    glob = "[a-z]" * 100     # 500 bytes of pattern that match 100-byte names
    assert check_path(glob, "source", lengths=False) == glob
    with pytest.raises(DockerfileError, match="NUL"):
        check_path("a\0*", "source", lengths=False)


# -- ids -------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [0, 1, 65534, 2**31, MAX_ID])
def test_ids_the_kernel_stores(value: int) -> None:
    assert check_id(value, "uid") == value
    assert check_owner((value, value)) == (value, value)


@pytest.mark.parametrize(("owner", "needle"), [
    ((2**32 - 1, 0), "uid 4294967295 is out of range"),   # (uid_t)-1: "leave unchanged"
    ((99999999999, 0), "uid 99999999999 is out of range"),
    ((0, 99999999999), "gid 99999999999 is out of range"),
    ((-1, 0), "uid -1 is out of range"),
])
def test_ids_the_kernel_cannot_store(owner: tuple[int, int], needle: str) -> None:
    with pytest.raises(DockerfileError) as err:
        check_owner(owner)
    assert needle in err.value.message and "0 to 4294967294" in err.value.message


# -- check_process ---------------------------------------------------------------------

def test_check_process_accepts_an_ordinary_run() -> None:
    check_process(["/bin/sh", "-c", "echo é \udcff"], {"PATH": "/bin", "E": ""}, "/work")
    check_process(["x" * (MAX_ARG_STRLEN - 1)], {"A": "v" * (MAX_ARG_STRLEN - 3)}, "/")


@pytest.mark.parametrize(("argv", "env", "cwd", "needles"), [
    (["/bin/sh", "-c", "echo a\0b"], {}, "/", ("command contains a NUL", "'echo a\\x00b'")),
    (["a" * MAX_ARG_STRLEN], {}, "/", ("too long", "131072 bytes", "MAX_ARG_STRLEN")),
    (["true"], {"A": "x\0y"}, "/", ("environment variable 'A' contains a NUL",)),
    (["true"], {"A\0B": "1"}, "/", ("environment variable 'A\\x00B' contains a NUL",)),
    (["true"], {"A=B": "1"}, "/", ("invalid environment variable name 'A=B'",)),
    (["true"], {"": "1"}, "/", ("invalid environment variable name ''",)),
    (["true"], {"A": "v" * MAX_ARG_STRLEN}, "/", ("environment variable 'A' is too long",)),
    (["true"], {}, "/w\0d", ("working directory '/w\\x00d' contains a NUL",)),
    (["true"], {}, "/" + "n" * 256, ("working directory", "NAME_MAX")),
])
def test_check_process_rejects(argv: list[str], env: dict[str, str], cwd: str,
                               needles: tuple[str, ...]) -> None:
    with pytest.raises(DockerfileError) as err:
        check_process(argv, env, cwd)
    for needle in needles:
        assert needle in err.value.message, err.value.message


def test_an_environment_value_is_never_shown() -> None:
    """Values can be secrets (RUN --mount=type=secret,env=...): only names are shown."""
    with pytest.raises(DockerfileError) as err:
        check_process(["true"], {"TOKEN": "s3cr3t\0"}, "/")
    assert "s3cr3t" not in err.value.message and "TOKEN" in err.value.message


# -- where the checks are used -----------------------------------------------------------

def test_copy_options_refuse_an_owner_chown_cannot_set() -> None:
    assert CopyOptions(owner=(MAX_ID, MAX_ID)).owner == (MAX_ID, MAX_ID)
    with pytest.raises(DockerfileError, match="uid 99999999999 is out of range"):
        CopyOptions(owner=(99999999999, 99999999999))
    with pytest.raises(DockerfileError, match="gid 4294967295 is out of range"):
        CopyOptions(owner=(0, 2**32 - 1))


@pytest.mark.parametrize("dest", ["/a\0b", "/" + "d" * 256, "/" + "a/" * 2100])
def test_copy_destination_is_checked_before_the_root_is_touched(tmp_path: Path,
                                                                dest: str) -> None:
    (tmp_path / "src").write_text("x")
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(DockerfileError, match="destination"):
        copy_sources(root, [Source("src", tmp_path / "src")], dest, CopyOptions(owner=(0, 0)))
    assert list(root.iterdir()) == []


def test_copy_into_a_directory_checks_the_file_name_too(tmp_path: Path) -> None:
    name = "f" * 200
    (tmp_path / name).write_text("x")
    root = tmp_path / "root"
    root.mkdir()
    dest = "/" + "/".join(["d" * 250] * 16) + "/"          # 4017 bytes + a 200-byte name
    with pytest.raises(DockerfileError, match="PATH_MAX"):
        copy_sources(root, [Source(name, tmp_path / name)], dest, CopyOptions(owner=(0, 0)))


@pytest.mark.parametrize("pattern", ["a\0b", "a\0*", "dir/" + "n" * 256, "x/" * 2100])
def test_sources_are_checked(tmp_path: Path, pattern: str) -> None:
    with pytest.raises(DockerfileError, match="source"):
        resolve_sources(tmp_path, [pattern], "the build context", forbid_escape=True)


def test_parents_sources_are_checked(tmp_path: Path) -> None:
    with pytest.raises(DockerfileError, match="NUL"):
        resolve_parents_glob(tmp_path, "a\0/./*.txt")


@pytest.mark.parametrize(("value", "needle"), [
    ("type=cache,target=/c\0d", "mount target '/c\\x00d' contains a NUL"),
    ("type=bind,source=s\0,target=/c", "mount source 's\\x00' contains a NUL"),
    ("type=cache,target=/" + "m" * 256, "NAME_MAX"),
    ("type=secret,id=x,target=/run/" + "s" * 256, "NAME_MAX"),
])
def test_mount_paths_are_checked(value: str, needle: str) -> None:
    with pytest.raises(DockerfileError) as err:
        parse_mount(value, lambda word: word)
    assert needle in err.value.message


def test_a_secret_id_is_not_a_path() -> None:
    mount = parse_mount("type=secret,source=" + "i" * 300, lambda word: word)
    assert mount.id == "i" * 300


@pytest.mark.parametrize("name", ["a\0b", "ünï", "a\x7fb", "a/b", "a:b", "1abc", "_a", "a$"])
def test_stage_names_as_buildkit_reads_them(name: str) -> None:
    with pytest.raises(DockerfileError) as err:
        build_dockerfile(parse(f"FROM scratch AS {name}\n", "Dockerfile"))
    assert err.value.message.startswith("invalid name for build stage: ")
    assert "\0" not in err.value.message


@pytest.mark.parametrize("name", ["a", "Build", "a-b_c.d", "x1.2-3", "z" * 300])
def test_valid_stage_names(name: str) -> None:
    df = build_dockerfile(parse(f"FROM scratch AS {name}\n", "Dockerfile"))
    assert df.stages[0].name == name.lower()


# -- rendering and JSON --------------------------------------------------------------------

def test_printable_escapes_control_characters_only() -> None:
    assert printable("a\0b\x1b[31mred\rX\x7f\x9b") == r"a\x00b\x1b[31mred\x0dX\x7f\x9b"
    # an undecodable byte (a lone surrogate) is shown as \xNN too: no UTF-8 writer takes it
    assert printable("tab\there\nnext é \udcff") == "tab\there\nnext é \\xff"


def test_an_error_never_sends_control_characters_to_the_terminal() -> None:
    loc = SourceLocation("Dockerfile", 2, 3, "ENV A=a\0b\nRUN \x1b]0;pwned\x07")
    text = render_error(DistillError("unable to find user a\0b", hint="\x1bc", location=loc))
    assert text.splitlines() == [
        r"error: Dockerfile:2-3: unable to find user a\x00b",
        r"    2 | ENV A=a\x00b",
        r"    3 | RUN \x1b]0;pwned\x07",
        r"hint: \x1bc",
    ]


def test_config_json_writes_invalid_utf8_as_go_does() -> None:
    """A --build-arg of bytes that are not UTF-8 arrives as lone surrogates; Go's
    encoding/json writes each such byte as U+FFFD, and so does canonical_json."""
    data = canonical_json({"Labels": {"l": "a\udcffb\udc80"}, "ok": "é\U0001F600\0"})
    assert json.loads(data) == {"Labels": {"l": "a\ufffdb\ufffd"}, "ok": "é\U0001F600\0"}
    assert b"\\u0000" in data


@pytest.mark.parametrize("spec", ["8_0", "+80", " 80", "٨٠", "80\0", "1-8_0", "99999999999",
                                  "65536", "0x50"])
def test_expose_takes_go_uint16_digits_only(spec: str) -> None:
    with pytest.raises(DockerfileError, match="invalid containerPort"):
        parse_ports([spec])


def test_expose_still_reads_ordinary_specs() -> None:
    assert parse_ports(["80", "0", "65535/UDP", "1.2.3.4:8080:80-81"]) == [
        "80/tcp", "0/tcp", "65535/udp", "80/tcp", "81/tcp"]


def test_a_cache_mount_owner_the_kernel_stores() -> None:
    mount = parse_mount("type=cache,target=/c,uid=4294967294,gid=0", lambda word: word)
    assert (mount.uid, mount.gid) == (4294967294, 0)
    with pytest.raises(DockerfileError, match="uid 4294967295 is out of range"):
        parse_mount("type=cache,target=/c,uid=4294967295", lambda word: word)


@pytest.mark.parametrize("value", ["0o755", "7_5_5", " 755", "+755", "", "8", "77777"])
def test_chmod_takes_ascii_octal_digits_only(value: str) -> None:
    """int(v, 8) took all of these; BuildKit refuses them."""
    from distill.builder.copystep import _parse_chmod
    from distill.dockerfile import instructions as ins
    from distill.errors import DockerfileError
    inst = ins.Copy.__new__(ins.Copy)
    object.__setattr__(inst, "location", None)
    with pytest.raises(DockerfileError, match="invalid chmod parameter"):
        _parse_chmod(inst, value)
