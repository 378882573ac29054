"""A prune killed while it removes a snapshot leaves no half-removed snapshot behind: the
next build would take what remains for the whole layer (a snapshot's name is its diff_id)."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill.store import gc
from distill.store.store import Store


def test_a_prune_killed_halfway_leaves_no_partial_snapshot(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path / "store")
    snapshot = store.snapshot_dir / ("ab" * 32)
    (snapshot / "usr/bin").mkdir(parents=True)
    for i in range(20):
        (snapshot / "usr/bin" / f"tool{i}").write_text("x")
    real = gc.remove_tree

    def killed_halfway(path: Path) -> None:
        victims = sorted(p for p in path.rglob("tool*"))[:10]
        for victim in victims:          # some of its files go, then the process dies
            victim.unlink()
        raise KeyboardInterrupt

    monkeypatch.setattr(gc, "remove_tree", killed_halfway)
    with pytest.raises(KeyboardInterrupt):
        gc.prune(store)
    assert not snapshot.exists()        # gone from snapshots/ whole, before any file went
    monkeypatch.setattr(gc, "remove_tree", real)
    leftovers = list(store.blobs.tmp_dir.iterdir())
    assert [p.name for p in leftovers] == [f"removed-{snapshot.name}"]
