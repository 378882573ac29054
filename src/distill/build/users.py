"""USER and --chown: names resolved against the root filesystem's /etc/passwd and /etc/group."""

from __future__ import annotations

from pathlib import Path

from distill.confine import resolve_in_root
from distill.errors import DistillError


def _table(root: Path, name: str) -> list[list[str]]:
    try:
        text = resolve_in_root(root, f"/etc/{name}").read_text(errors="replace")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def _lookup_user(root: Path, user: str) -> tuple[int, int | None]:
    if user.isdigit():
        uid = int(user)
        for row in _table(root, "passwd"):
            if len(row) > 3 and row[2] == user and row[3].isdigit():
                return uid, int(row[3])
        return uid, None
    for row in _table(root, "passwd"):
        if len(row) > 3 and row[0] == user and row[2].isdigit() and row[3].isdigit():
            return int(row[2]), int(row[3])
    raise DistillError(f"unable to find user {user}: no matching entries in passwd file")


def _lookup_group(root: Path, group: str) -> int:
    if group.isdigit():
        return int(group)
    for row in _table(root, "group"):
        if len(row) > 2 and row[0] == group and row[2].isdigit():
            return int(row[2])
    raise DistillError(f"unable to find group {group}: no matching entries in group file")


def resolve_user(root: Path, spec: str) -> tuple[int, int]:
    """'name', 'uid', 'name:group', 'uid:gid' -> (uid, gid), as Docker resolves USER."""
    if not spec:
        return 0, 0
    user, _, group = spec.partition(":")
    uid, primary = _lookup_user(root, user)
    if group:
        return uid, _lookup_group(root, group)
    return uid, primary if primary is not None else 0


def resolve_chown(root: Path, spec: str) -> tuple[int, int]:
    """--chown: a lone user gets gid = uid when numeric, else the user's primary group."""
    user, _, group = spec.partition(":")
    if user.isdigit() and not group:
        return int(user), int(user)
    uid, primary = _lookup_user(root, user)
    if group:
        return uid, _lookup_group(root, group)
    return uid, primary if primary is not None else uid


def home_of(root: Path, uid: int) -> str:
    """$HOME for a RUN step when the image sets none: the passwd entry, else /root or /."""
    for row in _table(root, "passwd"):
        if len(row) > 5 and row[2] == str(uid) and row[5]:
            return row[5]
    return "/root" if uid == 0 else "/"


def supplementary_groups(root: Path, spec: str) -> tuple[int, ...]:
    """Extra groups for USER, as runc computes them: none when USER names a group (or is
    empty); else every /etc/group entry listing the user's passwd name, in file order."""
    user, _, group = spec.partition(":")
    if not user or group:
        return ()
    name = None
    for row in _table(root, "passwd"):
        if len(row) > 2 and (row[0] == user or (user.isdigit() and row[2] == user)):
            name = row[0]
            break
    if name is None:
        return ()
    return tuple(int(row[2]) for row in _table(root, "group")
                 if len(row) > 3 and row[2].isdigit() and name in row[3].split(","))
