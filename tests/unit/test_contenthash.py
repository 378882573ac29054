"""The stat cache behind context hashing: a file whose stat is unchanged is not read
again; any change of content (even with size and mtime restored) is seen."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from distill.builder import contenthash
from distill.builder.contenthash import ContentHashes
from distill.errors import DistillError


def _digest(hashes: ContentHashes, path: Path) -> str:
    return hashes.file_digest(str(path), os.lstat(path), path.name)


def test_an_unchanged_file_is_not_read_again(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(contenthash, "RACY_NS", 0)     # the file is "old enough" at once
    f = tmp_path / "ctx" / "a.txt"
    f.parent.mkdir()
    f.write_text("hello\n")
    cache = tmp_path / "store" / "hashes.json"
    first = ContentHashes(cache)
    digest = _digest(first, f)
    assert first.hashed == 1
    first.save()
    again = ContentHashes(cache)
    assert _digest(again, f) == digest and again.hashed == 0
    # same size, same mtime, other bytes: ctime moved, so the file is read again
    st = os.lstat(f)
    f.write_text("jello\n")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    third = ContentHashes(cache)
    assert _digest(third, f) != digest and third.hashed == 1


def test_a_file_changed_just_now_is_never_remembered(tmp_path: Path) -> None:
    """git's racy-clean case: a file younger than the clock's granularity could change
    again without changing its stat, so it is hashed every time."""
    f = tmp_path / "new.txt"
    f.write_text("x")
    cache = tmp_path / "hashes.json"
    hashes = ContentHashes(cache)
    _digest(hashes, f)
    hashes.save()
    later = ContentHashes(cache)
    _digest(later, f)
    assert later.hashed == 1


def test_a_broken_cache_file_costs_only_a_rehash(tmp_path: Path) -> None:
    cache = tmp_path / "hashes.json"
    cache.write_bytes(b"\xff not json")
    f = tmp_path / "a"
    f.write_text("a")
    hashes = ContentHashes(cache)
    assert _digest(hashes, f) == \
        "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"


def test_a_symlink_swapped_in_for_a_file_is_not_followed(tmp_path: Path) -> None:
    f = tmp_path / "a"
    f.write_text("a")
    st = os.lstat(f)
    f.unlink()
    f.symlink_to("/etc/shadow")
    with pytest.raises(DistillError):
        ContentHashes().file_digest(str(f), st, "a")


def test_walk_digest_sees_modes_and_owners_but_not_times(tmp_path: Path) -> None:
    f = tmp_path / "a"
    f.write_text("a")

    def digest() -> str:
        return ContentHashes().walk_digest([("a", str(f), os.lstat(f))])

    before = digest()
    os.utime(f, (1, 1))
    assert digest() == before
    os.chmod(f, 0o600)
    assert digest() != before
    os.chmod(f, 0o644)
    os.chown(f, 1, 1)
    assert digest() != before
