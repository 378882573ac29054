"""A prune beside a running build keeps what the build pinned (store/pins.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from distill.oci.digest import Digest
from distill.owned import is_alive
from distill.store.gc import prune
from distill.store.store import Store

# another process using the store: it looks for a blob and a snapshot (which pins them),
# says so, and holds on until its stdin closes
_USER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from distill.oci.digest import Digest
    from distill.store.store import Store
    store = Store(Path(sys.argv[1]))
    assert store.blobs.has(Digest(sys.argv[2]))
    assert store.snapshot_path(Digest(sys.argv[3])).is_dir()
    print("pinned", flush=True)
    sys.stdin.read()
""")


def test_prune_keeps_what_a_living_process_pinned(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    blob, _ = store.blobs.put_bytes(b"a layer of a build in progress, tagged nowhere")
    other, _ = store.blobs.put_bytes(b"an unreachable blob no one uses")
    diff_id = Digest.of_bytes(b"its tar")
    (store.snapshot_dir / diff_id.hex / "etc").mkdir(parents=True)
    user = subprocess.Popen([sys.executable, "-c", _USER, str(store.root), str(blob),
                             str(diff_id)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert user.stdout is not None and user.stdout.readline() == "pinned\n"
        report = prune(Store(store.root))       # beside it, not refused
        assert report.removed == {"blobs": 1}
        assert store.blobs.blob_dir.joinpath(blob.hex).exists()
        assert not store.blobs.blob_dir.joinpath(other.hex).exists()
        assert (store.snapshot_dir / diff_id.hex / "etc").is_dir()
    finally:
        assert user.stdin is not None
        user.stdin.close()
        assert user.wait(timeout=30) == 0
    # once the process is gone, so are its pins
    report = prune(Store(store.root))
    assert report.removed == {"blobs": 1, "snapshots": 1}
    assert all(p.name == "pins.lock" or is_alive(p.name)
               for p in (store.root / "pins").iterdir())
    assert not store.blobs.blob_dir.joinpath(blob.hex).exists()
