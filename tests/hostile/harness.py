"""What the hostile-input cases are made of: a raw tar writer, an OCI layout writer, a
canary outside the build, and the ``Case`` each file under ``cases/`` declares.

Every case is a Python file ``cases/<family>_<name>.py`` whose docstring says what the
attack is, what distill must do and why, and which defines ``CASE = Case(...)``:

* ``setup(h)`` makes the inputs in the case's own directory (``h.tmp``): a Dockerfile in
  ``h.ctx``, context files, tar layers (``tar(...)``), an OCI layout given as ``FROM base``
  (``h.layout(...)``), a root filesystem imported with ``distill import``;
* ``error``: the build must fail with exit code 1 and this text in its ``error:``
  message; or ``check(h)``: the build must succeed and ``h.out`` (the image as
  ``--output type=local``) is checked;
* ``bug``: a known distill bug (a strict xfail), with the correct expectation kept;
  ``bug_shows``: text every problem the runner finds must contain (any other problem,
  say a changed canary, fails the test even so).

Whatever the outcome, the runner (tests/integration/test_hostile_corpus.py) checks the
canary ``h.canary`` (a directory outside the context, the store and the output, at which
the attacks aim) is byte-for-byte and metadata-unchanged with nothing new in it, that
its secret appears in no output, that distill printed no traceback, and that
``distill store verify`` passes afterwards.

Binary inputs are made here, deterministically, at test time: ``tar()`` writes ustar
headers itself (names with ``..``, absolute names, non-UTF-8 bytes, GNU sparse headers,
declared sizes with no data behind them: what Python's tarfile would refuse or
normalise), with PAX records where asked (xattrs, long names).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import platform
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# -- the canary -------------------------------------------------------------------------

SECRET = b"hostile-canary-secret-4c1d8e\n"


def make_canary(where: Path) -> Path:
    """A directory outside the build with a secret file (0640), a subdirectory with a
    file, an ``etc/passwd`` and a file with an xattr: what an attack would read, replace,
    link to, delete or write beside."""
    where.mkdir(parents=True)
    (where / "secret").write_bytes(SECRET)
    os.chmod(where / "secret", 0o640)
    (where / "dir").mkdir()
    (where / "dir" / "file").write_bytes(b"canary dir file\n")
    (where / "etc").mkdir()
    (where / "etc" / "passwd").write_bytes(b"root:x:0:0:" + SECRET.strip() + b":/:/bin/sh\n")
    (where / "tagged").write_bytes(b"tagged\n")
    os.setxattr(where / "tagged", "user.canary", b"1")
    return where


def walk(root: Path) -> list[Path]:
    """Every path below ``root`` (not following symlinks), sorted per directory, without
    recursion: a hostile tree may be deeper than Python's recursion limit (os.walk
    recurses on Python 3.11)."""
    found: list[Path] = []
    stack = [root]
    while stack:
        top = stack.pop()
        try:
            names = sorted(os.listdir(top))
        except OSError:
            continue
        for name in names:
            path = top / name
            found.append(path)
            if stat.S_ISDIR(os.lstat(path).st_mode):
                stack.append(path)
    return found


def snapshot(root: Path) -> dict[str, tuple[Any, ...]]:
    """Everything about ``root`` and each path below it that a write, a chmod, a chown,
    a link, an xattr or a replacement would change (ctime included; atime not, reads are
    checked by the secret not showing up anywhere)."""
    found: dict[str, tuple[Any, ...]] = {}
    for path in [root, *walk(root)]:
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode):
            content: Any = hashlib.sha256(path.read_bytes()).hexdigest()
        elif stat.S_ISLNK(st.st_mode):
            content = os.readlink(path)
        else:
            content = None
        try:
            attrs = {n: os.getxattr(path, n, follow_symlinks=False)
                     for n in sorted(os.listxattr(path, follow_symlinks=False))}
        except OSError:
            attrs = {}
        found[str(path.relative_to(root))] = (
            stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
            st.st_size, st.st_ino, st.st_nlink, st.st_mtime_ns, st.st_ctime_ns, content,
            attrs)
    return found


# -- tar, written by hand --------------------------------------------------------------

REG, LNK, SYM, CHR, BLK, DIR, FIFO = b"0", b"1", b"2", b"3", b"4", b"5", b"6"
BLOCK = 512


@dataclass
class Member:
    """One tar entry. ``name``/``linkname`` are str or raw bytes; ``size`` is the size
    the header declares (default: ``len(data)``), ``data`` what follows it (padded);
    ``pax`` records go in an 'x' header before it; ``sparse_size`` makes it an old-GNU
    sparse entry ('S') declaring that real size."""
    name: str | bytes
    kind: bytes = REG
    data: bytes = b""
    linkname: str | bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    devmajor: int = 0
    devminor: int = 0
    size: int | None = None
    pax: dict[str, bytes] = field(default_factory=dict)
    sparse_size: int | None = None


def f(name: str | bytes, data: bytes = b"", mode: int = 0o644, **kw: Any) -> Member:
    return Member(name, REG, data, mode=mode, **kw)


def d(name: str | bytes, mode: int = 0o755, **kw: Any) -> Member:
    return Member(name, DIR, mode=mode, **kw)


def sym(name: str | bytes, target: str | bytes, **kw: Any) -> Member:
    return Member(name, SYM, linkname=target, mode=0o777, **kw)


def hard(name: str | bytes, target: str | bytes, **kw: Any) -> Member:
    return Member(name, LNK, linkname=target, **kw)


def dev(name: str | bytes, kind: bytes, major: int, minor: int, **kw: Any) -> Member:
    return Member(name, kind, devmajor=major, devminor=minor, mode=0o666, **kw)


def _b(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _num(value: int, width: int) -> bytes:
    """An octal field (NUL-terminated), or GNU base-256 when it does not fit."""
    if 0 <= value < 8 ** (width - 1):
        return b"%0*o\0" % (width - 1, value)
    return bytes([0x80]) + value.to_bytes(width - 1, "big")


def _pax_record(key: str, value: bytes) -> bytes:
    body = b" " + key.encode() + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length = len(str(length)) + len(body)
    return str(length).encode() + body


def _header(name: bytes, kind: bytes, *, mode: int = 0o644, uid: int = 0, gid: int = 0,
            size: int = 0, mtime: int = 0, linkname: bytes = b"", devmajor: int = 0,
            devminor: int = 0, gnu_sparse: tuple[int, int, int] | None = None) -> bytes:
    """One 512-byte header. ustar magic, or old GNU's ('ustar  ') with a sparse map of one
    chunk (offset, length) and a real size when ``gnu_sparse`` is given."""
    head = bytearray(BLOCK)
    head[0:100] = name[:100].ljust(100, b"\0")
    head[100:108] = _num(mode, 8)
    head[108:116] = _num(uid, 8)
    head[116:124] = _num(gid, 8)
    head[124:136] = _num(size, 12)
    head[136:148] = _num(mtime, 12)
    head[148:156] = b" " * 8
    head[156:157] = kind
    head[157:257] = linkname[:100].ljust(100, b"\0")
    if gnu_sparse is None:
        head[257:265] = b"ustar\x0000"
        head[329:337] = _num(devmajor, 8)
        head[337:345] = _num(devminor, 8)
    else:
        offset, length, real = gnu_sparse
        head[257:265] = b"ustar  \0"
        head[386:398] = _num(offset, 12)
        head[398:410] = _num(length, 12)
        head[482:483] = b"\0"                 # no extension headers
        head[483:495] = _num(real, 12)
    head[148:156] = b"%06o\0 " % sum(head)
    return bytes(head)


def _padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def member_bytes(m: Member) -> bytes:
    name, link = _b(m.name), _b(m.linkname)
    pax = dict(m.pax)
    if len(name) > 100 and "path" not in pax:
        pax["path"] = name
    if len(link) > 100 and "linkpath" not in pax:
        pax["linkpath"] = link
    out = b""
    if pax:
        records = b"".join(_pax_record(k, v) for k, v in pax.items())
        out += _header(b"PaxHeaders/" + name[-80:], b"x", size=len(records)) + _padded(records)
    size = len(m.data) if m.size is None else m.size
    if m.sparse_size is not None:
        out += _header(name, b"S", mode=m.mode, size=len(m.data), mtime=m.mtime,
                       gnu_sparse=(m.sparse_size - len(m.data), len(m.data), m.sparse_size))
    else:
        out += _header(name, m.kind, mode=m.mode, uid=m.uid, gid=m.gid, size=size,
                       mtime=m.mtime, linkname=link, devmajor=m.devmajor,
                       devminor=m.devminor)
    return out + _padded(m.data)


def tar(*members: Member, end: bool = True) -> bytes:
    """An uncompressed tar of ``members`` in order (two zero blocks at the end)."""
    return b"".join(member_bytes(m) for m in members) + (bytes(2 * BLOCK) if end else b"")


@functools.lru_cache(maxsize=2)
def gzip_bomb(expanded: int) -> bytes:
    """A gzip stream (concatenated members, about 1000:1) of a tar holding one file of
    ``expanded`` zero bytes: ~1.3 MB per GiB. (As test_security_store.py's bomb.)"""
    chunk = 16 << 20
    assert expanded % chunk == 0
    zeros = gzip.compress(bytes(chunk), compresslevel=9, mtime=0)
    head = _header(b"zeros", REG, size=expanded)
    return (gzip.compress(head, mtime=0) + zeros * (expanded // chunk)
            + gzip.compress(bytes(2 * BLOCK), mtime=0))


def pax_header_bomb(size: int, then: bytes) -> bytes:
    """A gzip tar whose first header is a PAX extended header of ``size`` bytes (one
    ``comment`` record of 'z's: valid, and meaningless), followed by the tar ``then``:
    a few hundred KiB that an unpacker reading the header whole holds as ``size`` bytes
    of memory (several times over, once decoded). Go's archive/tar, which BuildKit and
    containerd use, refuses extended headers over 1 MiB."""
    body = size - 40
    record = _pax_record("comment", b"z" * body)
    record = _pax_record("comment", b"z" * (body - (len(record) - size)))
    assert len(record) == size
    data = _header(b"PaxHeaders/big", b"x", size=size) + _padded(record) + then
    return gzip.compress(data, compresslevel=9, mtime=0)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- OCI layouts ------------------------------------------------------------------------

LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


class Layout:
    """An OCI image layout being written: ``config``, ``manifest`` and ``index`` are plain
    dicts a case may edit (to lie) before ``save()``; ``put()`` adds a blob."""

    def __init__(self, path: Path, layers: list[tuple[bytes, str]]) -> None:
        """``layers``: (blob, diff_id) pairs, bottom first."""
        self.path = path
        (path / "blobs" / "sha256").mkdir(parents=True)
        (path / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        descs = []
        for blob, _ in layers:
            media = LAYER_GZIP if blob[:2] == b"\x1f\x8b" else LAYER_TAR
            descs.append({"mediaType": media, **self.put(blob)})
        machine = platform.machine()
        self.config: dict[str, Any] = {
            "architecture": _ARCH.get(machine, machine), "os": "linux",
            "config": {"Env": [("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
                                "/sbin:/bin")]},
            "rootfs": {"type": "layers", "diff_ids": [diff for _, diff in layers]},
        }
        self.manifest: dict[str, Any] = {"schemaVersion": 2, "mediaType": MANIFEST,
                                         "config": {"mediaType": CONFIG}, "layers": descs}
        self.index: dict[str, Any] = {"schemaVersion": 2, "manifests": [
            {"mediaType": MANIFEST,
             "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}

    def blob_path(self, digest: str) -> Path:
        return self.path / "blobs" / "sha256" / digest.split(":", 1)[1]

    def put(self, data: bytes) -> dict[str, Any]:
        digest = sha256(data)
        self.blob_path(digest).write_bytes(data)
        return {"digest": digest, "size": len(data)}

    def save(self, *, config: bool = True, manifest: bool = True) -> Layout:
        """Write the config and the manifest as blobs (their descriptors updated unless
        ``config``/``manifest`` is False: a case that set a lying descriptor keeps it)
        and index.json."""
        data = json.dumps(self.config).encode()
        if config:
            self.manifest["config"].update(self.put(data))
        else:
            self.put(data)
        data = json.dumps(self.manifest).encode()
        if manifest:
            self.index["manifests"][0].update(self.put(data))
        else:
            self.put(data)
        (self.path / "index.json").write_text(json.dumps(self.index))
        return self


# -- one case's world --------------------------------------------------------------------

@dataclass(frozen=True)
class Base:
    """The session's busybox root filesystem: its tar, and that tar as a gzip blob."""
    tar_path: Path
    plain: bytes = field(repr=False)
    gz: bytes = field(repr=False)


class Hostile:
    """One case's directory and what the runner will run: ``h.ctx`` (the context, with
    its Dockerfile), ``h.out`` (the image's files after a successful build), ``h.canary``
    (the target), ``h.args`` (extra ``distill build`` arguments), ``h.prefix`` (a command
    that runs distill, e.g. setpriv), ``h.command`` (distill's arguments when the case
    runs another command than ``build``, e.g. ``import``)."""

    def __init__(self, tmp: Path, base: Base, run: Callable[..., Any]) -> None:
        self.tmp = tmp
        self.base = base
        self._run = run                       # run(*args, check=...) -> CompletedProcess
        self.canary = make_canary(tmp / "canary")
        self.ctx = tmp / "ctx"
        self.ctx.mkdir()
        self.out = tmp / "out"
        self.store = tmp / "store"
        self.args: list[str] = []
        self.prefix: list[str] = []
        self.command: list[str] | None = None  # run instead of the build (e.g. import)
        self.remove_after: list[Path] = []     # trees too deep for pytest's cleanup
        self.timeout = 120.0
        self._layouts = 0

    # the Dockerfile and the context
    def dockerfile(self, text: str) -> None:
        (self.ctx / "Dockerfile").write_text(text)

    def file(self, rel: str | bytes, data: bytes = b"", mode: int = 0o644) -> Path:
        path = Path(os.fsdecode(os.path.join(os.fsencode(self.ctx), _b(rel))))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.chmod(path, mode)
        return path

    # bases
    def busybox(self) -> str:
        """busybox:latest imported into the case's store; returns its name."""
        self.distill("import", str(self.base.tar_path), "busybox:latest")
        return "busybox:latest"

    def import_rootfs(self, data: bytes, name: str) -> None:
        """``distill import`` of a root filesystem tar (it must be accepted)."""
        path = self.tmp / f"{name.replace(':', '-')}.tar"
        path.write_bytes(data)
        self.distill("import", str(path), name)

    def layout(self, *layers: bytes | tuple[bytes, str], busybox: bool = True,
               save: bool = True, name: str = "base") -> Layout:
        """An OCI layout of busybox (unless ``busybox=False``) and ``layers`` (tar bytes,
        gzip of them, or (blob, diff_id) where the diff_id is given, true or not),
        given to the build as ``--build-context NAME=oci-layout://...`` (``FROM base``
        in the Dockerfile). Saved unless ``save=False`` (a case that lies edits it
        first, then calls ``save()``)."""
        self._layouts += 1
        pairs = [(self.base.gz, sha256(self.base.plain))] if busybox else []
        for layer in layers:
            if isinstance(layer, tuple):
                pairs.append(layer)
                continue
            plain = gzip.decompress(layer) if layer[:2] == b"\x1f\x8b" else layer
            pairs.append((layer, sha256(plain)))
        lay = Layout(self.tmp / f"layout{self._layouts}", pairs)
        self.args += ["--build-context", f"{name}=oci-layout://{lay.path}"]
        return lay.save() if save else lay

    def distill(self, *args: str, check: bool = True) -> Any:
        return self._run(*args, check=check)

    # what attacks aim at
    @property
    def climb(self) -> str:
        """A relative path from anywhere up to '/', then down into the canary."""
        return "../" * 40 + str(self.canary).lstrip("/")


@dataclass(frozen=True)
class Case:
    """One hostile input: ``attack`` and ``outcome`` are the one-line summaries the
    threat-model table shows; ``error`` or ``check`` is what the runner asserts."""
    attack: str
    outcome: str
    setup: Callable[[Hostile], None]
    error: str | None = None
    check: Callable[[Hostile], None] | None = None
    bug: str | None = None
    bug_shows: str = ""
    #: the case's own setup needs root (device nodes, other owners in the context): the
    #: rootless run (tests/rootless/run) leaves it out
    needs_root: bool = False

    def __post_init__(self) -> None:
        assert (self.error is None) != (self.check is None), \
            "a case states either the error text or the check of a successful build"
        assert bool(self.bug) == bool(self.bug_shows), \
            "a known bug says what its failure shows (bug_shows), and only a bug does"


def read_out(h: Hostile, rel: str) -> bytes:
    return (h.out / rel).read_bytes()
