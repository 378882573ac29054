"""distill.owned: temporary directories named for their process, swept when it is gone."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from distill import owned


def _dead_tag() -> str:
    proc = subprocess.Popen(["true"])
    tag = owned.process_tag(proc.pid)
    proc.wait()
    return tag


def test_only_directories_of_dead_processes_are_swept(tmp_path: Path) -> None:
    mine = owned.make_dir("x-", tmp_path)
    assert mine.name.startswith(f"x-{owned.process_tag(os.getpid())}-")
    assert mine.stat().st_mode & 0o777 == 0o700
    dead = tmp_path / f"x-{_dead_tag()}-abc"
    dead.mkdir(mode=0o700)
    (dead / "secret").write_text("s")
    shared = tmp_path / f"x-{_dead_tag()}-open"   # not private: someone else's, maybe
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    odd = tmp_path / "x-notapid-1-z"
    odd.mkdir(mode=0o700)
    other_prefix = tmp_path / f"y-{_dead_tag()}-q"
    other_prefix.mkdir(mode=0o700)
    link = tmp_path / f"x-{_dead_tag()}-link"
    link.symlink_to(dead)
    removed: list[Path] = []
    owned.sweep("x-", tmp_path, removed.append)
    assert removed == [dead]
    removed.clear()
    owned.sweep("x-", tmp_path, removed.append, private=False)
    assert sorted(removed) == sorted([dead, shared])


def test_a_reused_pid_is_not_its_old_process() -> None:
    tag = owned.process_tag(os.getpid())
    pid, start = tag.split("-")
    assert owned.is_alive(tag)
    assert not owned.is_alive(f"{pid}-{int(start) + 1}")


def test_temp_dir_removes_what_killed_builds_left(tmp_path: Path) -> None:
    """ADD's download directory (opened 0711 for the jailed git) left by a killed build
    goes when the next one makes its own; its own goes when it is done."""
    left = tmp_path / f"distill-add-{_dead_tag()}-abc"
    (left / "checkout").mkdir(parents=True)
    os.chmod(left, 0o711)
    with owned.temp_dir("distill-add-", tmp_path) as mine:
        assert not left.exists()
        assert mine.parent == tmp_path and mine.is_dir()
    assert not mine.exists()
