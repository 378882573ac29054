"""The local store: blobs, named images, layer facts, unpacked snapshots, build cache."""

from __future__ import annotations

import fcntl
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from distill import phases
from distill.errors import DistillError, StoreError, os_failure
from distill.oci.descriptor import Descriptor
from distill.oci.digest import Digest
from distill.oci.reference import normalize_reference
from distill.store.blobs import PRIVATE_MODE, BlobStore, make_private, remove_tree
from distill.store.location import default_root
from distill.store.names import NameIndex, atomic_write, read_record
from distill.store.pins import Pins


@dataclass(frozen=True)
class LayerFacts:
    """What the manifest does not say about a layer blob: its diff_id and tar size.

    Facts are only ever recorded from what distill computed from the blob's bytes (a
    layer it wrote, or one whose uncompressed stream it hashed), never from what an
    image's config claims, so a claim can be checked against them."""

    diff_id: Digest
    uncompressed_size: int


#: How many repositories are remembered per blob.
MAX_BLOB_SOURCES = 8

#: Every directory of the store (the packages that use them create them).
STORE_DIRS = ("blobs", "blobs/sha256", "tmp", "pins", "snapshots", "layers", "cache",
              "sources", "made-blobs", "memo", "contenthash", "cache-mounts", "debs",
              "indexes", "url-validators")


def _check_own_dirs(root: Path) -> None:
    """Each of the store's directories is a directory, not a link: a link would lead a
    prune, a repair or a chmod to whatever it points at."""
    for name in STORE_DIRS:
        path = root / name
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a directory"
            raise StoreError(f"{path} is {kind}: distill's store holds only directories "
                             "it made itself",
                             hint=f"remove it (rm {path}); distill makes it again")


class Store:
    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or default_root()).resolve()
        try:
            make_private(self.root)
            # Held shared for this object's life by every store user; ``distill prune``
            # takes it exclusively, so it never removes what a running build is using.
            self._usage = open(self.root / "store.lock", "a")  # noqa: SIM115 (held for life)
        except OSError as e:
            raise StoreError(f"cannot use {self.root} as distill's store: "
                             f"{e.strerror or e}",
                             hint="DISTILL_ROOT must name a directory distill may create "
                                  "or write") from None
        fcntl.flock(self._usage, fcntl.LOCK_SH)
        _check_own_dirs(self.root)
        self.snapshot_dir = self.root / "snapshots"
        self.facts_dir = self.root / "layers"
        self.cache_dir = self.root / "cache"
        self.sources_dir = self.root / "sources"
        self.made_dir = self.root / "made-blobs"
        try:
            self.pins = Pins(self.root / "pins")
            self.blobs = BlobStore(self.root, self.pins)
            self.names = NameIndex(self.root, self.blobs.tmp_dir)
            for d in (self.snapshot_dir, self.facts_dir, self.cache_dir, self.sources_dir,
                      self.made_dir):
                make_private(d)
        except OSError as e:        # a store made on a full or read-only filesystem
            raise os_failure(e, "cannot set up distill's store at", self.root) from None

    def lock_exclusive(self, doing: str = "prune --all") -> None:
        """Become the store's only user (for ``doing``), or fail if another one runs."""
        try:
            fcntl.flock(self._usage, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(f"the store {self.root} is in use by another distill process",
                             hint=f"run distill {doing} when no build is running") from None

    # -- layer facts ---------------------------------------------------------
    def record_layer(self, blob: Digest, facts: LayerFacts, *, replace: bool = False) -> None:
        """Remember what distill computed for ``blob`` (never what a config claims);
        ``replace`` overwrites facts that a fresh computation found wrong."""
        path = self.facts_dir / blob.hex
        if replace or not path.exists():
            data = {"diff_id": str(facts.diff_id), "size": facts.uncompressed_size}
            atomic_write(path, json.dumps(data).encode(), self.blobs.tmp_dir)

    def layer_facts(self, blob: Digest) -> LayerFacts | None:
        """The facts distill computed for ``blob``, or None (unknown, or unreadable)."""
        try:
            data = json.loads(read_record(self.facts_dir / blob.hex))
            return LayerFacts(Digest(data["diff_id"]), int(data["size"]))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, DistillError):
            return None  # a torn or foreign file: the blob is simply hashed again

    # -- the blob distill made for a layer it built (compressed on demand) --
    def made_blob(self, diff_id: Digest, tag: str = "gzip") -> Descriptor | None:
        """The blob distill compressed (as ``tag`` says: Compression.tag) from layer
        ``diff_id``, if it still has it."""
        name = diff_id.hex if tag == "gzip" else f"{diff_id.hex}.{tag}"
        try:
            desc = Descriptor.from_dict(json.loads(read_record(self.made_dir / name)))
        except (FileNotFoundError, ValueError, KeyError, TypeError, DistillError):
            return None
        return desc if self.blobs.has(desc.digest) else None

    def record_made_blob(self, diff_id: Digest, blob: Descriptor, tag: str = "gzip") -> None:
        name = diff_id.hex if tag == "gzip" else f"{diff_id.hex}.{tag}"
        atomic_write(self.made_dir / name, json.dumps(blob.to_dict()).encode(),
                     self.blobs.tmp_dir)

    # -- where blobs are known to live (for cross-repository mounts on push) --
    def blob_sources(self, blob: Digest) -> list[str]:
        """``host/repository`` names known to hold ``blob`` (pulled from or pushed to)."""
        try:
            value = json.loads(read_record(self.sources_dir / blob.hex))
        except (FileNotFoundError, ValueError):
            return []
        return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []

    def add_blob_source(self, blob: Digest, where: str) -> None:
        known = self.blob_sources(blob)
        if where not in known:    # a lost update under a race only costs a later upload
            known = [where, *known][:MAX_BLOB_SOURCES]
            atomic_write(self.sources_dir / blob.hex, json.dumps(known).encode(),
                         self.blobs.tmp_dir)

    # -- snapshots (unpacked layers in overlayfs format) ---------------------
    def snapshot_path(self, diff_id: Digest) -> Path:
        """Where layer ``diff_id`` is (or would be) unpacked, pinned first (a concurrent
        prune keeps it while this process lives)."""
        self.pins.pin("snapshot", diff_id.hex)
        return self.snapshot_dir / diff_id.hex

    def claim_snapshots(self, marks: str) -> None:
        """Say which overlayfs marks this process's snapshots carry (``trusted`` as root,
        ``user`` rootless: an opaque directory's xattr); refuse a store whose snapshots
        carry the other kind, which this process's overlays would not see (a directory a
        layer replaced would show its old content). A store without snapshots changes
        hands freely."""
        marker = self.root / "snapshots.marks"
        missing = False
        try:
            found = read_record(marker).decode(errors="replace").strip()
        except FileNotFoundError:   # snapshots made before the marker were made as root
            found, missing = "trusted", True
        except ValueError:
            found = ""   # damaged: judged by whether snapshots exist, as a different kind
        if found == marks and not missing:
            return
        if found != marks and any(self.snapshot_dir.iterdir()):
            made = "rootless" if found == "user" else "as root" if found == "trusted" else \
                "by an unknown distill"
            raise StoreError(
                f"the store {self.root} holds snapshots made {made}, which this "
                f"{'rootless ' if marks == 'user' else ''}distill cannot use",
                hint="use another store (DISTILL_ROOT), or remove the snapshots: "
                     "distill prune --all")
        atomic_write(marker, marks.encode() + b"\n", self.blobs.tmp_dir)

    def commit_snapshot(self, tmp: Path, diff_id: Digest) -> Path:
        """Move a finished directory into place; if another build won, keep theirs.

        ``diff_id`` must be what distill computed for the directory's content (the
        hash of the layer tar it unpacked or wrote), never a name an image asserted.
        The directory becomes 0700 (an overlay's root takes its upper dir's mode)."""
        final = self.snapshot_path(diff_id)
        os.chmod(tmp, PRIVATE_MODE)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
            remove_tree(tmp)
        return final

    # -- build cache: step key -> result -------------------------------------
    def cache_get(self, key: str) -> dict[str, object] | None:
        try:
            value = json.loads(read_record(self.cache_dir / key))
        except (FileNotFoundError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def cache_put(self, key: str, value: dict[str, object]) -> None:
        phases.enter("store")
        atomic_write(self.cache_dir / key, json.dumps(value, sort_keys=True).encode(),
                     self.blobs.tmp_dir)

    # -- names ----------------------------------------------------------------
    def lookup(self, name: str) -> Descriptor | None:
        """The image tagged ``name`` as Docker normalises it (``python:3.12`` is
        ``docker.io/library/python:3.12``), or None. ``NAME@DIGEST`` finds a tag of that
        repository pointing at that manifest."""
        wanted = normalize_reference(name).with_default_tag()
        for entry_name, desc in self.names.entries():
            try:
                have = normalize_reference(entry_name).with_default_tag()
            except DistillError:
                continue    # a name some other tool wrote into the layout
            if have.name != wanted.name:
                continue
            if wanted.digest is not None:
                if str(desc.digest) == wanted.digest:
                    return desc
            elif have.tag == wanted.tag:
                return desc
        return None

    def resolve(self, name: str) -> Descriptor:
        desc = self.lookup(name)
        if desc is not None:
            return desc
        raise StoreError(
            f"image {name!r} not found in the store ({self.root})",
            hint="list images with 'distill images'; make a base with 'distill base' "
                 "(Debian, distroless) or 'distill import' (a rootfs tarball), or name an "
                 "OCI layout with --build-context NAME=oci-layout://PATH",
        )
