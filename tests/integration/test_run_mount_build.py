"""RUN --mount and --network through the CLI; a secret reaches no layer, config, history or cache."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.conftest import RunDistill
from tests.helpers.rootless import files_holding

pytestmark = pytest.mark.integration
SECRET = "s3cr3t-VALUE-9f41c2"
DIGEST = hashlib.sha256(SECRET.encode()).hexdigest()  # the Dockerfile names only the digest

DOCKERFILE = f"""\
FROM busybox
RUN --mount=type=secret,id=tok test "$(sha256sum < /run/secrets/tok)" = "{DIGEST}  -" && echo file-ok > /file-ok
RUN --mount=type=secret,id=tok,env=TOK test "$(printf %s "$TOK" | sha256sum)" = "{DIGEST}  -" && echo env-ok > /env-ok
RUN --mount=type=cache,target=/cache echo run >> /cache/runs && wc -l < /cache/runs > /runs-seen
RUN --mount=type=tmpfs,target=/scratch touch /scratch/gone && ls /scratch > /tmpfs-seen
RUN --network=none cat /proc/net/dev > /netdev
"""


def test_mounts_secret_cache_tmpfs_network(distill: RunDistill, busybox_image: str,
                                          tmp_path: Path, store_root: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    secret_file = tmp_path / "tok.txt"
    secret_file.write_text(SECRET)
    outs = []
    for n in (1, 2):
        out = tmp_path / f"out{n}"
        distill("build", "--no-cache", "--secret", f"id=tok,src={secret_file}",
                "--output", f"type=local,dest={out}", str(ctx))
        outs.append(out)
    first, second = outs
    assert (first / "file-ok").read_text() == "file-ok\n"
    assert (first / "env-ok").read_text() == "env-ok\n"
    assert not (first / "run" / "secrets" / "tok").exists()
    assert (first / "tmpfs-seen").read_text() == "gone\n"
    assert not (first / "scratch" / "gone").exists()
    assert int((second / "runs-seen").read_text()) == int((first / "runs-seen").read_text()) + 1
    assert not (first / "cache" / "runs").exists()
    netdev = (first / "netdev").read_text()
    assert "lo:" in netdev and "eth0" not in netdev

    layout = tmp_path / "layout"
    distill("build", "--secret", f"id=tok,src={secret_file}", "-t", "secret-test:1",
            "--output", f"type=oci,dest={layout},tar=false", str(ctx))
    assert not files_holding(layout, SECRET.encode())
    assert not files_holding(store_root, SECRET.encode())


def test_missing_required_secret_is_a_clear_error(distill: RunDistill, busybox_image: str,
                                                  tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox\nRUN --mount=type=secret,id=nope,required=true true\n")
    proc = distill("build", str(tmp_path), check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "Dockerfile:2" in proc.stderr and "nope" in proc.stderr
