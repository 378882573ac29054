"""The diff_id a pull computes while a layer downloads: the same as a pass over the stored
blob, failing as that pass fails (bad gzip, a bomb) but only when asked (after the blob
has verified), never blocking the download, and standing only for every byte from the
first."""

from __future__ import annotations

import dataclasses
import gzip
import io
import random
import tarfile
import threading

import pytest

from distill import limits
from distill.errors import ImageError
from distill.formats.layers import compute_diff_id
from distill.limits import ArchiveLimitError
from distill.oci import mediatypes as mt
from distill.registry.pull import _StreamedDiffId, _Tee


def _tar(files: int = 40, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for i in range(files):
            data = rng.randbytes(rng.randrange(0, 200_000))
            info = tarfile.TarInfo(f"dir/file-{i}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _feed(streamed: _StreamedDiffId, data: bytes, seed: int = 2, most: int = 100_000) -> None:
    rng = random.Random(seed)
    pos = 0
    while pos < len(data):
        n = rng.randrange(1, most)
        streamed.write(data[pos:pos + n])
        pos += n


def _streamed(data: bytes, media_type: str, *, most: int = 100_000) -> _StreamedDiffId:
    streamed = _StreamedDiffId(media_type, "layer x")
    feeder = threading.Thread(target=_feed, args=(streamed, data), kwargs={"most": most})
    feeder.start()
    feeder.join(60)
    assert not feeder.is_alive(), "the download blocked on the diff_id thread"
    streamed.close()
    return streamed


@pytest.mark.parametrize("media_type", [mt.OCI_LAYER_GZIP, mt.DOCKER_LAYER_GZIP])
def test_gzip_layer_as_a_pass_over_the_blob(media_type: str) -> None:
    tar = _tar()
    # two gzip members, as a concatenating compressor writes them
    blob = gzip.compress(tar[:300_000]) + gzip.compress(tar[300_000:])
    expected = compute_diff_id(io.BytesIO(blob), media_type, "layer x")
    assert expected[1] == len(tar)
    assert _streamed(blob, media_type).result(len(blob)) == expected


def test_uncompressed_layer_as_a_pass_over_the_blob() -> None:
    tar = _tar(seed=3)
    expected = compute_diff_id(io.BytesIO(tar), mt.OCI_LAYER_TAR, "layer x")
    assert _streamed(tar, mt.OCI_LAYER_TAR).result(len(tar)) == expected


def test_bad_gzip_fails_when_asked_and_never_blocks_the_download() -> None:
    blob = b"this is not gzip " * 100_000      # far more chunks than the queue holds
    with pytest.raises(ImageError, match="not valid gzip") as second_pass:
        compute_diff_id(io.BytesIO(blob), mt.OCI_LAYER_GZIP, "layer x")
    streamed = _streamed(blob, mt.OCI_LAYER_GZIP, most=4096)
    with pytest.raises(ImageError) as raised:
        streamed.result(len(blob))
    assert raised.value.message == second_pass.value.message


def test_a_bomb_is_refused_as_on_a_second_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "ARCHIVE_LIMITS", dataclasses.replace(
        limits.ARCHIVE_LIMITS, ratio_grace=1 << 20, max_ratio=10))
    blob = gzip.compress(bytes(16 << 20), compresslevel=1)
    with pytest.raises(ArchiveLimitError, match="decompression bomb"):
        compute_diff_id(io.BytesIO(blob), mt.OCI_LAYER_GZIP, "layer x")
    streamed = _streamed(blob, mt.OCI_LAYER_GZIP)
    with pytest.raises(ArchiveLimitError, match="decompression bomb"):
        streamed.result(len(blob))


def test_only_every_byte_from_the_first_gives_a_result() -> None:
    tar = _tar(files=5, seed=4)
    short = _streamed(tar[:-512], mt.OCI_LAYER_TAR)
    assert short.result(len(tar)) is None       # not all of the blob went through

    class Blob:                                 # the download's side of BlobStore.incoming
        size = 0

        def write(self, data: bytes) -> None:
            self.size += len(data)

        def restart(self) -> None:
            self.size = 0

    streamed = _StreamedDiffId(mt.OCI_LAYER_TAR, "layer x")
    tee = _Tee(Blob(), streamed)                # type: ignore[arg-type]
    tee.write(tar[:1000])
    tee.restart()                               # a server that ignored Range: from 0 again
    tee.write(tar)
    streamed.close()
    assert tee.size == len(tar)
    assert streamed.result(len(tar)) is None    # a second pass over the stored blob instead
