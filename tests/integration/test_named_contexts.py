"""--build-context NAME=DIR and NAME=docker-image://REF, as buildx spells them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import RunDistill
from tests.helpers.rootless import owner

pytestmark = pytest.mark.integration


def test_local_directory_context(distill: RunDistill, busybox_image: str,
                                 tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    (extra / "conf").mkdir(parents=True)
    (extra / "conf" / "app.ini").write_text("debug=false\n")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY --from=settings conf /etc/app/\n")
    out = tmp_path / "out"
    distill("build", "--build-context", f"settings={extra}", "-o", f"type=local,dest={out}",
            str(ctx))
    copied = out / "etc" / "app" / "app.ini"
    assert copied.read_text() == "debug=false\n"
    assert (copied.stat().st_uid, copied.stat().st_gid) == owner(0, 0)


def test_docker_image_context_replaces_a_base(distill: RunDistill, busybox_image: str,
                                              tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM alpine:3\nRUN test -x /bin/busybox\n")
    distill("build", "--build-context", f"alpine:3=docker-image://{busybox_image}",
            str(tmp_path))


def test_local_directory_is_not_a_base(distill: RunDistill, busybox_image: str,
                                       tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM base\n")
    proc = distill("build", "--build-context", f"base={tmp_path}", str(tmp_path), check=False)
    assert proc.returncode != 0 and "not an image" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_proxy_args_reach_run_but_not_the_image(distill: RunDistill, busybox_image: str,
                                                tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        'FROM busybox\nRUN case "$HTTP_PROXY" in http://proxy.*) touch /ok;; *) exit 1;; esac\n'
        # both spellings, as BuildKit sets them (llbsolver proxyEnvList)
        'RUN test "$http_proxy" = "$HTTP_PROXY"\n')
    layout = tmp_path / "layout"
    proc = distill("build", "--no-cache", "--build-arg", "HTTP_PROXY=http://proxy.invalid:3128",
                   "-t", "proxy:1", "-o", f"type=oci,dest={layout},tar=false", str(tmp_path))
    assert "not consumed" not in proc.stderr
    blobs = b"".join(p.read_bytes() for p in (layout / "blobs" / "sha256").iterdir())
    assert b"proxy.invalid" not in blobs
