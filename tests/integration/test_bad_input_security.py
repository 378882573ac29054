"""Values no kernel can hold, in every instruction: a clean error at the right line, or a
correct build where BuildKit builds too.

A NUL byte reaches a Dockerfile as a literal byte in the file (distill reads it as
BuildKit does) or as a JSON ``\\u0000`` escape in an exec-form array; shell-form words have
no escape that makes one, and a command line or an environment variable cannot carry one
(so no --build-arg can). A base image's config (Env, an ONBUILD trigger) can carry one too.

BuildKit (checked with the one in Debian's dockerd) writes such values into the image's
config as they are, and fails only where one reaches the kernel: a path (WORKDIR, COPY,
ADD, RUN --mount), a process's argv or environment (RUN), a chown(2) id. distill does the
same, and where it fails the error names the Dockerfile and line, shows the line (control
characters escaped), says what is wrong, and is never a Python traceback. Every run also
keeps a canary outside the build and checks it is neither changed nor read.

The matrix (``TEMPLATES`` x ``VALUES``) puts each hostile value into each instruction; the
expected outcome follows from where the value goes (a path, a process, only the config).
"""

from __future__ import annotations

import gzip
import io
import json
import re
import subprocess
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunDistill
from tests.helpers.rootless import ROOTLESS

pytestmark = pytest.mark.integration

CANARY = "canary-secret-" + uuid.uuid4().hex
DISTILL_ERROR = 1          # cli/main: a DistillError (a usage error is 2)

# -- helpers -----------------------------------------------------------------------------

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _escaped(text: str) -> str:
    """How an error shows a Dockerfile line: control characters as \\xNN."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


@dataclass
class Built:
    proc: subprocess.CompletedProcess[str]
    ctx: Path
    out: Path

    @property
    def dockerfile(self) -> Path:
        return self.ctx / "Dockerfile"


def _build(distill: RunDistill, tmp_path: Path, dockerfile: bytes, *args: str,
           files: dict[str, bytes] | None = None, tag: str | None = None) -> Built:
    """Build with an OCI layout output, or into the store as ``tag``."""
    canary = tmp_path / "canary"
    canary.write_text(CANARY)
    ctx = tmp_path / f"ctx-{uuid.uuid4().hex[:8]}"
    ctx.mkdir()
    (ctx / "Dockerfile").write_bytes(dockerfile)
    for name, data in {"f": b"payload\n", **(files or {})}.items():
        (ctx / name).write_bytes(data)
    out = tmp_path / f"out-{uuid.uuid4().hex[:8]}"
    where = ["-t", tag] if tag else ["--output", f"type=oci,dest={out},tar=false"]
    proc = distill("build", "--progress", "plain", *where, *args, str(ctx), check=False)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    assert canary.read_text() == CANARY, "the canary outside the build was changed"
    assert CANARY not in proc.stdout + proc.stderr
    return Built(proc, ctx, out)


def assert_points_at(built: Built, line: int, *needles: str) -> str:
    """distill's error exit, 'error: DOCKERFILE:LINE: message' followed by the line as
    ' LINE | text' (escaped), every needle in the message; returns the message."""
    proc = built.proc
    err = proc.stderr
    assert proc.returncode == DISTILL_ERROR, f"exit {proc.returncode}:\n{err[-3000:]}"
    lines = built.dockerfile.read_bytes().decode().split("\n")
    text = _escaped(lines[line - 1])
    pattern = (rf"^error: {re.escape(str(built.dockerfile))}:{line}(-\d+)?: (?P<msg>.*)\n"
               rf"\s*{line} \| {re.escape(text)}$")
    m = re.search(pattern, err, re.MULTILINE)
    assert m, f"no 'error: {built.dockerfile}:{line}: ...' then ' {line} | ...' in:\n" \
              f"{err[-3000:]}"
    block = err[m.start():]
    assert not _CONTROL.search(block), "raw control characters in the error:\n" + block
    for needle in needles:
        assert needle in m.group("msg"), f"{needle!r} not in {m.group('msg')!r}"
    return m.group("msg")


def _blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()


def _manifest(layout: Path) -> dict[str, Any]:
    index = json.loads((layout / "index.json").read_text())
    return json.loads(_blob(layout, index["manifests"][0]["digest"]))


def _config(layout: Path) -> dict[str, Any]:
    return json.loads(_blob(layout, _manifest(layout)["config"]["digest"]))


def _last_layer(layout: Path) -> dict[str, tarfile.TarInfo]:
    data = _blob(layout, _manifest(layout)["layers"][-1]["digest"])
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
        return {m.name: m for m in tar.getmembers()}


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


# -- the matrix ----------------------------------------------------------------------------

VALUES = {
    "nul": "a\0b",                                   # a literal NUL byte in the file
    "name-max": "n" * 256,                           # one byte over NAME_MAX
    "path-max": "/".join(["p" * 100] * 41),          # 4140 bytes: over PATH_MAX
    "control": "\x1b]0;pwned\x07",                   # a terminal escape: a fine value
}


@dataclass(frozen=True)
class Template:
    text: str        # after "FROM busybox\n"; {v} the value, {j} the value JSON-escaped
    reaches: str     # "path", "process" or "config": where the value ends up
    line: int        # the line an error points at
    needle: str      # what the error names


TEMPLATES = {
    "WORKDIR": Template("WORKDIR /{v}\n", "path", 2, "WORKDIR"),
    "COPY-dest": Template("COPY f /{v}\n", "path", 2, "destination"),
    "COPY-dest-dir": Template("COPY f /{v}/\n", "path", 2, "destination"),
    "COPY-source": Template("COPY {v} /x\n", "path", 2, "source"),
    "ADD-dest": Template("ADD f /{v}\n", "path", 2, "destination"),
    "RUN-mount-target": Template("RUN --mount=type=cache,target=/{v} true\n", "path", 2,
                                 "mount target"),
    "RUN-mount-source": Template("RUN --mount=source={v},target=/m true\n", "path", 2,
                                 "mount source"),
    "ENV-then-RUN": Template("ENV A={v}\nRUN true\n", "process", 3, "environment variable 'A'"),
    "ARG-then-RUN": Template("ARG X={v}\nRUN true\n", "process", 3, "environment variable 'X'"),
    "RUN-shell": Template("RUN echo '{v}'\n", "process", 2, "command contains a NUL"),
    "RUN-exec": Template('RUN ["echo", "{j}"]\n', "process", 2, "command contains a NUL"),
    "RUN-heredoc": Template("RUN <<EOF\necho '{v}'\nEOF\n", "process", 2, "command contains a NUL"),
    "SHELL-then-RUN": Template('SHELL ["/bin/echo", "{j}"]\nRUN x\n', "process", 3,
                               "command contains a NUL"),
    "LABEL": Template('LABEL l="{v}"\n', "config", 0, ""),
    "ENV": Template("ENV A={v}\n", "config", 0, ""),
    "ARG": Template("ARG X={v}\n", "config", 0, ""),
    "USER": Template("USER {v}\n", "config", 0, ""),
    "ENTRYPOINT": Template('ENTRYPOINT ["{j}"]\n', "config", 0, ""),
    "CMD": Template('CMD ["{j}"]\n', "config", 0, ""),
    "VOLUME": Template("VOLUME /{v}\n", "config", 0, ""),
    "HEALTHCHECK": Template("HEALTHCHECK CMD {v}\n", "config", 0, ""),
    "ONBUILD": Template("ONBUILD RUN {v}\n", "config", 0, ""),
    "MAINTAINER": Template("MAINTAINER {v}\n", "config", 0, ""),
}


def _fails(template: Template, value: str) -> bool:
    if template.reaches == "path":
        return value != VALUES["control"]
    if template.reaches == "process":
        return value == VALUES["nul"]
    return False


def _why(value: str) -> str:
    return {VALUES["nul"]: "NUL byte", VALUES["name-max"]: "NAME_MAX",
            VALUES["path-max"]: "PATH_MAX"}.get(value, "")


@pytest.mark.parametrize("value_id", list(VALUES))
@pytest.mark.parametrize("template_id", list(TEMPLATES))
def test_hostile_value_in_instruction(distill: RunDistill, busybox_image: str, tmp_path: Path,
                                      template_id: str, value_id: str) -> None:
    template, value = TEMPLATES[template_id], VALUES[value_id]
    body = template.text.replace("{j}", json.dumps(value)[1:-1]).replace("{v}", value)
    dockerfile = ("FROM busybox\n" + body).encode("utf-8")
    # a source that can exist is in the context (ESC and BEL are fine in a file name)
    files = {value: b"hostile name\n"} if value == VALUES["control"] else {}
    built = _build(distill, tmp_path, dockerfile, files=files)
    if _fails(template, value):
        assert_points_at(built, template.line, template.needle, _why(value))
        assert not built.out.exists(), "a failed build exports nothing"
        return
    assert built.proc.returncode == 0, built.proc.stderr[-3000:]
    config = _config(built.out)
    if template.reaches == "config" and template_id != "ARG":
        # written as it is (JSON holds any string), as BuildKit writes it
        assert any(value in s for s in _strings(config)), config
    if template_id == "WORKDIR":
        assert config["config"]["WorkingDir"] == "/" + value


# -- ids: --chown and USER -----------------------------------------------------------------

@pytest.mark.parametrize(("dockerfile", "line", "needles"), [
    ("COPY --chown=99999999999 f /a\n", 2, ("uid 99999999999 is out of range",)),
    ("COPY --chown=1:99999999999 f /a\n", 2, ("gid 99999999999 is out of range",)),
    ("COPY --chown=4294967295 f /a\n", 2, ("uid 4294967295 is out of range", "4294967294")),
    ("ARG U=99999999999\nCOPY --chown=$U:$U f /a\n", 3, ("uid 99999999999",)),
    ("ADD --chown=99999999999 f /a\n", 2, ("uid 99999999999",)),
    ("COPY --link --chown=99999999999 f /a\n", 2, ("uid 99999999999",)),
    ("COPY --chown=7:99999999999 <<EOF /x\nhi\nEOF\n", 2, ("gid 99999999999",)),
    ("USER 99999999999\nWORKDIR /w\n", 3, ("uid 99999999999 is out of range",)),
    ("USER 4294967295\nWORKDIR /w\n", 3, ("uid 4294967295 is out of range",)),
    ("USER 99999999999\nRUN true\n", 3, ("99999999999",)),
    ("USER 0:99999999999\nRUN true\n", 3, ("99999999999",)),
    ("COPY --chown=-1 f /a\n", 2, ("-1",)),
    ("COPY --chown=ghost:ghost f /a\n", 2, ("unable to find user ghost",)),
    ("COPY --chown=root:ghost f /a\n", 2, ("unable to find group ghost",)),
    ("COPY --chown=a\0b f /a\n", 2, ("a\\x00b",)),
    ("USER a\0b\nRUN true\n", 3, ("a\\x00b",)),
])
def test_ids_no_kernel_can_store(distill: RunDistill, busybox_image: str, tmp_path: Path,
                                 dockerfile: str, line: int, needles: tuple[str, ...]) -> None:
    built = _build(distill, tmp_path, ("FROM busybox\n" + dockerfile).encode())
    assert_points_at(built, line, *needles)


def test_the_largest_id_is_set(distill: RunDistill, busybox_image: str, tmp_path: Path) -> None:
    """2^32 - 2 is a uid the kernel stores (BuildKit's int32 parse makes it a user name,
    not found, so root: distill sets what was asked)."""
    built = _build(distill, tmp_path, b"FROM busybox\nCOPY --chown=4294967294:2147483648 f /a\n")
    if ROOTLESS:   # the user namespace maps 0-65535 only: a clear error, at the line
        assert_points_at(built, 2, "belongs to uid 4294967294, gid 2147483648, which this "
                         "rootless build has no id for")
        assert "maps container ids 0-65535" in built.proc.stderr
        return
    assert built.proc.returncode == 0, built.proc.stderr[-3000:]
    member = _last_layer(built.out)["a"]
    assert (member.uid, member.gid) == (4294967294, 2147483648)


# -- other instructions ----------------------------------------------------------------------

MORE: dict[str, tuple[bytes, int, tuple[str, ...]]] = {
    # a base's name, a stage's name
    "FROM-nul": (b"FROM busy\0box\n", 1, ("busy\\x00box", "invalid reference format")),
    "stage-name-nul": (b"FROM busybox AS a\0b\n", 1,
                       ("invalid name for build stage", "'a\\x00b'")),
    "stage-name-letter": (b"FROM busybox AS st\xc3\xa4ge\n", 1,
                          ("invalid name for build stage",)),
    "COPY-from-nul": (b"FROM busybox\nCOPY --from=a\0b f /x\n", 2, ("a\\x00b",)),
    # values BuildKit's converter checks, with its messages
    "EXPOSE-nul": (b"FROM busybox\nEXPOSE 80\0\n", 2, ("invalid containerPort: 80\\x00",)),
    "EXPOSE-huge": (b"FROM busybox\nEXPOSE 99999999999\n", 2, ("invalid containerPort",)),
    "EXPOSE-underscore": (b"FROM busybox\nEXPOSE 8_0\n", 2, ("invalid containerPort: 8_0",)),
    "STOPSIGNAL-nul": (b"FROM busybox\nSTOPSIGNAL TERM\0\n", 2, ("invalid signal",)),
    "STOPSIGNAL-huge": (b"FROM busybox\nSTOPSIGNAL 99999999999999999999\n", 2,
                        ("invalid signal",)),
    "chmod-nul": (b"FROM busybox\nCOPY --chmod=7\x0055 f /a\n", 2, ("chmod parameter",)),
    "chmod-huge": (b"FROM busybox\nCOPY --chmod=777777777777777 f /a\n", 2, ("chmod parameter",)),
    "HEALTHCHECK-interval": (b"FROM busybox\nHEALTHCHECK --interval=99999999999h CMD true\n",
                             2, ('invalid duration "99999999999h"',)),
    "HEALTHCHECK-retries": (b"FROM busybox\nHEALTHCHECK --retries=99999999999 CMD true\n", 2,
                            ("value out of range",)),
    # a physical line over BuildKit's 64 KiB scanner limit
    "line-over-64k": (b"FROM busybox\nLABEL l=" + b"x" * 70000 + b"\n", 2,
                      ("max allowed size",)),
    # one string over MAX_ARG_STRLEN (lines continued, or an ENV grown from itself)
    "RUN-argument-too-long": (b"FROM busybox\nRUN echo \\\n"
                              + (b"  " + b"b" * 60000 + b" \\\n") * 3 + b"  end\n",
                              2, ("too long", "MAX_ARG_STRLEN")),
    "ENV-too-long-for-RUN": (b"FROM busybox\nENV A=" + b"a" * 60000 + b"\nENV A=$A$A$A\n"
                             b"RUN true\n", 4,
                             ("environment variable 'A' is too long", "MAX_ARG_STRLEN")),
    # more paths: a tmpfs target, --parents, a wildcard
    "cache-mount-uid": (b"FROM busybox\nRUN --mount=type=cache,target=/c,uid=4294967295 true\n",
                        2, ("uid 4294967295 is out of range",)),
    "tmpfs-target-nul": (b"FROM busybox\nRUN --mount=type=tmpfs,target=/t\0 true\n", 2,
                         ("mount target",)),
    "COPY-parents-nul": (b"FROM busybox\nCOPY --parents a\0/./f /x/\n", 2, ("source", "NUL")),
    "COPY-wildcard-nul": (b"FROM busybox\nCOPY f* a\0* /x/\n", 2, ("source", "NUL")),
    # a heredoc's name is a file name in the image
    "COPY-heredoc-name-max": (b"FROM busybox\nCOPY <<" + b"H" * 256 + b" /x/\nhi\n" + b"H" * 256
                              + b"\n", 2, ("destination", "NAME_MAX")),
    "RUN-heredoc-script-name-max": (b"FROM busybox\nRUN <<" + b"H" * 256 + b"\n#!/bin/sh\n"
                                    + b"H" * 256 + b"\n", 2, ("too long",)),
    # a NUL that arrives through an ARG's default and an expansion
    "ARG-into-WORKDIR": (b"FROM busybox\nARG D=/a\0b\nWORKDIR $D\n", 3, ("WORKDIR", "NUL")),
    "ARG-into-COPY": (b"FROM busybox\nARG D=x\nCOPY f /$D\0\n", 3, ("destination", "NUL")),
}


@pytest.mark.parametrize("case", list(MORE))
def test_more_hostile_instructions(distill: RunDistill, busybox_image: str, tmp_path: Path,
                                   case: str) -> None:
    dockerfile, line, needles = MORE[case]
    assert_points_at(_build(distill, tmp_path, dockerfile), line, *needles)


# -- what a base image carries -----------------------------------------------------------------

def _subdir(tmp_path: Path, name: str) -> Path:
    (tmp_path / name).mkdir()
    return tmp_path / name


def test_a_base_images_nul_fails_at_the_run_that_meets_it(distill: RunDistill,
                                                          busybox_image: str,
                                                          tmp_path: Path) -> None:
    """A base whose Env holds a NUL (as BuildKit writes it) builds; a RUN on it fails
    cleanly at the RUN, and the base's ONBUILD trigger at the child's FROM."""
    base = f"nul-env-{uuid.uuid4().hex[:8]}:1"
    built = _build(distill, _subdir(tmp_path, "base"),
                   b"FROM busybox\nENV A=a\0b\nONBUILD RUN echo c\0d\n", tag=base)
    assert built.proc.returncode == 0, built.proc.stderr[-3000:]
    plain = f"nul-env-plain-{uuid.uuid4().hex[:8]}:1"
    built = _build(distill, _subdir(tmp_path, "plain"), b"FROM busybox\nENV A=a\0b\n",
                   tag=plain)
    assert built.proc.returncode == 0, built.proc.stderr[-3000:]

    child = _build(distill, _subdir(tmp_path, "run"), f"FROM {plain}\nRUN true\n".encode())
    assert_points_at(child, 2, "environment variable 'A' contains a NUL")
    child = _build(distill, _subdir(tmp_path, "trigger"), f"FROM {base}\n".encode())
    assert_points_at(child, 1, "command contains a NUL")


def test_bytes_that_are_not_utf8_build_as_go_writes_them(distill: RunDistill,
                                                         busybox_image: str,
                                                         tmp_path: Path) -> None:
    """A --build-arg of bytes that are not UTF-8 reaches RUN as those bytes, and the
    config as U+FFFD, as Go's encoding/json writes it (BuildKit's config)."""
    built = _build(distill, tmp_path,
                   b"FROM busybox\nARG X\nLABEL l=$X\nENV E=$X\n"
                   b"RUN printf %s \"$X\" > /bytes\n",
                   "--build-arg", "X=a\udcffb")
    assert built.proc.returncode == 0, built.proc.stderr[-3000:]
    config = _config(built.out)
    assert config["config"]["Labels"] == {"l": "a\ufffdb"}
    assert "E=a\ufffdb" in config["config"]["Env"]
    layer = _last_layer(built.out)
    data = _blob(built.out, _manifest(built.out)["layers"][-1]["digest"])
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
        assert tar.extractfile(layer["bytes"]).read() == b"a\xffb"  # type: ignore[union-attr]
