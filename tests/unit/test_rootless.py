"""sandbox/rootless: how an ordinary user's distill finds its ids and re-executes."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from distill.errors import SandboxError
from distill.sandbox import rootless


def test_the_initial_namespace_is_not_rootless() -> None:
    assert rootless._full_identity("         0          0 4294967295\n")
    assert not rootless._full_identity("0 1000 1\n1 100000 65535\n")
    assert not rootless._full_identity("0 0 65536\n")   # a pod's user namespace


def test_subordinate_range_by_name_or_number(tmp_path: Path) -> None:
    subuid = tmp_path / "subuid"
    subuid.write_text("someone:200000:65536\nroot:100000:65536\n0:1:2\n")
    assert rootless.subordinate_range(str(subuid), 0) == (100000, 65536)   # root by name
    subuid.write_text("# comment\nbroken:line\nx:y:z\n0:300000:1000\n")
    assert rootless.subordinate_range(str(subuid), 0) == (300000, 1000)    # by number
    subuid.write_text("root:100000:0\n")                                   # an empty range
    assert rootless.subordinate_range(str(subuid), 0) is None
    assert rootless.subordinate_range(str(tmp_path / "missing"), 0) is None


def test_unshare_maps_the_range_only_when_the_user_has_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    ranges = {"/etc/subuid": (100000, 65536), "/etc/subgid": (100000, 65536)}
    monkeypatch.setattr(rootless, "subordinate_range", lambda path, uid: ranges.get(path))
    argv = rootless.unshare_argv(["python", "-m", "distill", "build", "."], 1000)
    assert argv[:3] == [rootless.UNSHARE, "--map-auto", "--map-root-user"]
    assert argv[3:] == ["--mount", "--propagation", "private", "--",
                        "python", "-m", "distill", "build", "."]
    del ranges["/etc/subgid"]   # both files are needed: else only the user's own id
    assert rootless.unshare_argv(["x"], 1000)[:3] == [rootless.UNSHARE, "--map-root-user",
                                                      "--mount"]


def test_reexec_is_needed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.delenv(rootless.MARKER, raising=False)
    assert rootless.needs_reexec()
    monkeypatch.setenv(rootless.MARKER, "1")
    assert not rootless.needs_reexec()
    # re-executed, yet not root: unshare could not map the user (namespaces disabled)
    with pytest.raises(SandboxError, match="not root of its user namespace"):
        rootless.check_entered()
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert not rootless.needs_reexec()
    rootless.check_entered()


def test_an_owner_the_namespace_lacks_is_a_clear_error(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def refused(*_args: object) -> None:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "lchown", refused)
    target = tmp_path / "f"
    monkeypatch.setattr(rootless, "active", lambda: True)
    monkeypatch.setattr(rootless, "mapped_ids", lambda: 65536)   # the user and its range
    with pytest.raises(SandboxError, match="layer entry 'f' belongs to uid 70000, gid 5, "
                                           "which this rootless build has no id for") as err:
        rootless.chown(target, 70000, 5, "layer entry 'f'")
    assert err.value.hint == ("a rootless build maps container ids 0-65535 (the user and its "
                              "subordinate range); an owner of 70000 needs a build as root")
    monkeypatch.setattr(rootless, "mapped_ids", lambda: 1)       # no range: ask for one
    with pytest.raises(SandboxError) as err:
        rootless.chown(target, 0, 50, "layer entry 'var/local'")
    assert err.value.hint is not None and "no subordinate id range" in err.value.hint
    assert "usermod --add-subuids FIRST-LAST" in err.value.hint
    monkeypatch.setattr(rootless, "active", lambda: False)   # as root: the OSError itself
    with pytest.raises(OSError):
        rootless.chown(target, 70000, 5, "layer entry 'f'")


def test_notes_say_when_run_shares_the_containers_proc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rootless, "active", lambda: True)
    monkeypatch.setattr(rootless, "own_proc_possible", lambda: False)
    (note,) = rootless.notes()
    assert note.startswith("RUN shares this container's /proc")
    monkeypatch.setattr(rootless, "own_proc_possible", lambda: True)
    assert rootless.notes() == []
    monkeypatch.setattr(rootless, "active", lambda: False)
    assert rootless.notes() == []


def test_rootless_overlays_keep_their_marks_in_user_xattrs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from distill.sandbox import _overlayfs, overlay

    monkeypatch.setattr(rootless, "active", lambda: True)
    assert overlay.diff_options().split(",")[:2] == ["userxattr", "redirect_dir=nofollow"]
    assert _overlayfs.opaque_xattr() == "user.overlay.opaque"
    monkeypatch.setattr(rootless, "active", lambda: False)
    assert "userxattr" not in overlay.diff_options()
    assert "redirect_dir=off" in overlay.diff_options()
    assert _overlayfs.opaque_xattr() == "trusted.overlay.opaque"


def test_a_store_keeps_snapshots_of_one_kind(tmp_path: Path) -> None:
    """Snapshots made rootless mark opaque directories with user.overlay.opaque, which an
    overlay mounted as root ignores (and the other way round): a store whose snapshots
    are of the other kind is refused, until it has none."""
    from distill.errors import StoreError
    from distill.store.store import Store

    store = Store(tmp_path / "store")
    store.claim_snapshots("user")
    store.claim_snapshots("user")
    store.claim_snapshots("trusted")        # no snapshot yet: it changes hands
    (store.snapshot_dir / ("0" * 64)).mkdir()
    with pytest.raises(StoreError, match="holds snapshots made as root, which this rootless"):
        store.claim_snapshots("user")
    store.claim_snapshots("trusted")
    # a store with snapshots and no marker was made before the marker: as root
    (store.root / "snapshots.marks").unlink()
    with pytest.raises(StoreError, match="holds snapshots made as root"):
        store.claim_snapshots("user")
    store.claim_snapshots("trusted")
    assert (store.root / "snapshots.marks").read_text() == "trusted\n"
