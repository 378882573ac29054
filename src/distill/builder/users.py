"""USER and --chown: names resolved against the root filesystem's /etc/passwd and /etc/group."""

from __future__ import annotations

import stat
from pathlib import Path

from distill.confine import NotRegularFileError, read_file_in_root
from distill.errors import DistillError

# /etc/passwd and /etc/group are read from the image's root filesystem: inside it (no
# symlink leads out), regular files only (a FIFO would hang the build, a device leak a
# disk or never end), and no larger than this.
TABLE_LIMIT = 4 << 20
_HINT = "USER, --chown and $HOME are resolved from the image's /etc/passwd and /etc/group"


def _table(root: Path, name: str) -> list[list[str]]:
    try:
        data = read_file_in_root(root, f"/etc/{name}", TABLE_LIMIT,
                                 what=f"the image's /etc/{name}")
    except DistillError as e:
        if isinstance(e, NotRegularFileError) and stat.S_ISDIR(e.mode):
            return []          # nothing to read and nothing to fear: as if absent
        e.hint = e.hint or _HINT
        raise
    if data is None:
        return []
    text = data.decode("utf-8", "replace")
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
