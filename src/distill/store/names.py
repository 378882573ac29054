"""Named images in the store: an OCI ``index.json`` updated under a file lock.

Each entry is a manifest descriptor annotated with its name, exactly as an OCI
image layout tags images, so ``skopeo inspect oci:$DISTILL_ROOT:NAME`` works.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from distill import phases
from distill.errors import DistillError, StoreError
from distill.oci import mediatypes as mt
from distill.oci.descriptor import Descriptor, load_json


class NameIndex:
    def __init__(self, root: Path, temp_dir: Path | None = None) -> None:
        self.root = root
        self.temp_dir = temp_dir
        self.path = root / "index.json"
        self.lock_path = root / "index.lock"
        layout = root / "oci-layout"
        if not layout.exists():
            atomic_write(layout, json.dumps({"imageLayoutVersion": mt.OCI_LAYOUT_VERSION}).encode())
        if not self.path.exists():
            with self._locked():
                if not self.path.exists():
                    self._save([])

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _load(self) -> list[Descriptor]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        try:
            doc = load_json(data, str(self.path))
            manifests = doc.get("manifests", [])
            if not isinstance(manifests, list):
                raise TypeError("manifests is not a list")
            return [Descriptor.from_dict(m) for m in manifests]
        except (DistillError, AttributeError, TypeError) as e:
            message = e.message if isinstance(e, DistillError) else str(e)
            raise StoreError(f"the store's names ({self.path}) are damaged: {message}",
                             hint="'distill store verify --repair' keeps the names that "
                                  "are whole") from None

    def _save(self, entries: list[Descriptor]) -> None:
        doc = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [d.to_dict() for d in entries],
        }
        atomic_write(self.path, json.dumps(doc, indent=2).encode(), self.temp_dir)

    def tag(self, name: str, manifest: Descriptor) -> None:
        phases.enter("store")
        annotated = Descriptor(
            manifest.media_type,
            manifest.digest,
            manifest.size,
            {mt.ANNOTATION_REF_NAME: name},
            manifest.platform,
        )
        with self._locked():
            entries = [e for e in self._load() if e.annotations.get(mt.ANNOTATION_REF_NAME) != name]
            entries.append(annotated)
            entries.sort(key=lambda d: d.annotations.get(mt.ANNOTATION_REF_NAME, ""))
            self._save(entries)

    def untag(self, name: str) -> bool:
        """Remove the name ``name``; False when there was none."""
        with self._locked():
            entries = self._load()
            kept = [e for e in entries if e.annotations.get(mt.ANNOTATION_REF_NAME) != name]
            if len(kept) == len(entries):
                return False
            self._save(kept)
            return True

    def resolve(self, name: str) -> Descriptor | None:
        for entry in self._load():
            if entry.annotations.get(mt.ANNOTATION_REF_NAME) == name:
                return entry
        return None

    def entries(self) -> list[tuple[str, Descriptor]]:
        return [(e.annotations.get(mt.ANNOTATION_REF_NAME, ""), e) for e in self._load()]


#: A record is a few KiB; a build record or content-hash file may be a few MiB.
MAX_RECORD = 64 << 20


def read_record(path: Path) -> bytes:
    """A record's bytes: a regular file (a link is not followed, a FIFO never waited
    on) of at most MAX_RECORD bytes. Raises FileNotFoundError when there is none, and
    ValueError when what is there is no record (damage ``distill store verify``
    reports)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_RECORD:
            raise ValueError(f"{path} is not a record (a regular file of at most "
                             f"{MAX_RECORD} bytes)")
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(MAX_RECORD + 1)
    except OSError as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"{path} cannot be read as a record: {e.strerror}") from None
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, temp_dir: Path | None = None) -> None:
    """``path`` holds ``data`` (mode 0644, on disk) or what it held before, never a part.

    The temp file is made in ``temp_dir`` (on the same filesystem), default beside
    ``path``: the store passes its process's own temp directory, which the next store
    user removes if this process is killed, so no temp file outlives a crash."""
    fd, tmp = tempfile.mkstemp(dir=temp_dir or path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
