"""--output compression=gzip|zstd|uncompressed, compression-level=N and
force-compression=true, as buildx spells them: the layers the build made are written
so (base layers too with force-compression), read back by skopeo and by distill itself,
and the same tar always gives the same blob."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import RunDistill

pytestmark = pytest.mark.integration

ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def _layers(layout: Path) -> list[dict[str, object]]:
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((layout / "blobs/sha256" / index["manifests"][0]["digest"]
                           .split(":")[1]).read_text())
    return list(manifest["layers"])


@pytest.fixture
def ctx(busybox_image: str, tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "big.txt").write_text("compressible line\n" * 20000)
    (ctx / "Dockerfile").write_text(f"FROM {busybox_image}\nCOPY big.txt /\n"
                                    f"RUN busybox echo {tmp_path.name} > /made\n")
    return ctx


def _out(distill: RunDistill, ctx: Path, dest: Path, options: str) -> list[dict[str, object]]:
    distill("build", "--progress", "quiet", "-t", "z:latest", "--output",
            f"type=oci,dest={dest},tar=false,{options}", str(ctx))
    return _layers(dest)


def test_zstd_for_the_layers_the_build_made(distill: RunDistill, ctx: Path,
                                            tmp_path: Path) -> None:
    layers = _out(distill, ctx, tmp_path / "zstd", "compression=zstd")
    assert [m["mediaType"] for m in layers] == [GZIP, ZSTD, ZSTD]   # the base is kept
    again = _out(distill, ctx, tmp_path / "zstd-again", "compression=zstd")
    assert again == layers                          # the same tar, the same blob
    forced = _out(distill, ctx, tmp_path / "forced", "compression=zstd,force-compression=true")
    assert [m["mediaType"] for m in forced] == [ZSTD, ZSTD, ZSTD]
    assert forced[1:] == layers[1:]
    # another builder reads it, and distill builds on it (zstd layers unpacked)
    from tests.helpers.readback import skopeo_inspect
    info = skopeo_inspect(tmp_path / "forced", "latest")
    assert len(info["manifest"]["layers"]) == 3
    on = tmp_path / "on"
    on.mkdir()
    (on / "Dockerfile").write_text("FROM base\nRUN busybox cat /made > /seen\n")
    distill("build", "--progress", "quiet", "--build-context",
            f"base=oci-layout://{tmp_path / 'forced'}:latest", "--output",
            f"type=local,dest={tmp_path / 'files'}", str(on))
    assert (tmp_path / "files/seen").read_text() == f"{tmp_path.name}\n"


def test_gzip_levels_and_uncompressed(distill: RunDistill, ctx: Path, tmp_path: Path) -> None:
    fast = _out(distill, ctx, tmp_path / "default", "compression=gzip")
    best = _out(distill, ctx, tmp_path / "best", "compression=gzip,compression-level=9")
    assert [m["mediaType"] for m in best] == [GZIP, GZIP, GZIP]
    assert best[1]["digest"] != fast[1]["digest"]
    assert int(best[1]["size"]) <= int(fast[1]["size"])   # type: ignore[call-overload]
    plain = _out(distill, ctx, tmp_path / "plain", "compression=uncompressed")
    assert plain[1]["mediaType"] == "application/vnd.oci.image.layer.v1.tar"
    assert int(plain[1]["size"]) > 360000                 # type: ignore[call-overload]


@pytest.mark.parametrize(("options", "message"), [
    ("compression=lz4", "unsupported compression 'lz4'"),
    ("compression=gzip,compression-level=12", "out of range"),
    ("compression-level=x", "expected a number"),
])
def test_bad_compression_options_are_clear_errors(distill: RunDistill, ctx: Path,
                                                  tmp_path: Path, options: str,
                                                  message: str) -> None:
    proc = distill("build", "--output", f"type=oci,dest={tmp_path / 'x'},{options}",
                   str(ctx), check=False)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
