"""The build record's key and its racy-clean rule (builder/memo.py)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from distill.builder import memo


def _args(ctx: Path, **flags: object) -> argparse.Namespace:
    return argparse.Namespace(**{"context": str(ctx), "file": None, "build_context": [],
                                 "build_arg": [], "tag": ["app:1"], "quiet": False,
                                 "progress": "auto", "jobs": 2, "output": [], "push": False,
                                 **flags})


def test_a_build_whose_inputs_just_changed_is_not_recorded(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\n")      # changed a moment ago
    (tmp_path / "index.json").write_text("{}")
    before = memo.Inputs(_args(ctx))
    assert not memo.record(tmp_path, before, _args(ctx), digest="sha256:x", blobs=[],
                           names=[], lines=[], sizes={}, warnings=[])
    assert not (tmp_path / "memo").exists()


def test_the_key_follows_flags_files_and_the_store_but_not_presentation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    key = memo.Inputs(_args(ctx)).key(b"{}")
    assert memo.Inputs(_args(ctx, quiet=True, jobs=1)).key(b"{}") == key
    assert memo.Inputs(_args(ctx)).key(b'{"manifests": []}') != key
    assert memo.Inputs(_args(ctx, target="x")).key(b"{}") != key
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1")
    assert memo.Inputs(_args(ctx)).key(b"{}") != key
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    os.utime(ctx / "Dockerfile", (1, 1))
    assert memo.Inputs(_args(ctx)).key(b"{}") != key


def test_outputs_pushes_and_cache_exports_are_never_replayed(tmp_path: Path) -> None:
    ctx = tmp_path
    assert memo.replayable(_args(ctx))
    for flag, value in (("output", ["type=oci,dest=x"]), ("no_cache", True),
                        ("cache_to", ["type=local,dest=d"]), ("pull", True)):
        args = _args(ctx)
        setattr(args, flag, value)
        assert not memo.replayable(args), flag
