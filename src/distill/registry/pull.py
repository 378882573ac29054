"""Pulling an image from a registry into the store, trusting nothing the registry says.

Every manifest is hashed as it arrives (and must match the digest it was asked by),
every blob is verified against its descriptor's digest and size while it streams
(nothing unverified reaches ``blobs/``), and JSON documents are shape-checked before use
(the checks the OCI layout importer applies). Layers download in parallel; a download
that drops mid-blob resumes where it stopped (HTTP Range). A layer's diff_id is computed
from its bytes when it is first unpacked (``builder/rootfs``), as containerd does: the
snapshot is named by that, never by the config's claim, and a layer that does not unpack
to the claim is refused there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

from distill.errors import DigestMismatchError, ImageError, RegistryError
from distill.formats.layers import check_media_type
from distill.formats.layout_import import (
    config_from_json,
    descriptor,
    load_json_doc,
    manifest_parts,
)
from distill.formats.stored import load
from distill.image.image import Image
from distill.oci import mediatypes as mt
from distill.oci.descriptor import Descriptor
from distill.oci.digest import Digest
from distill.oci.platform import Platform
from distill.oci.reference import Reference
from distill.registry.client import Budget, RegistryClient
from distill.registry.registries import Registries
from distill.store.store import Store

MANIFEST_ACCEPT = f"{mt.OCI_INDEX}, {mt.DOCKER_MANIFEST_LIST}, {mt.OCI_MANIFEST}, " \
    f"{mt.DOCKER_MANIFEST}"
#: Manifests and indexes larger than this are refused (containerd's limit).
MAX_MANIFEST_BYTES = 4 << 20
#: Image configs larger than this are refused.
MAX_CONFIG_BYTES = 8 << 20
SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
           "application/vnd.docker.distribution.manifest.v1+prettyjws")


class ManifestNotFound(RegistryError):
    """The registry has no manifest by that tag or digest (HTTP 404)."""


def fetch_manifest(store: Store, client: RegistryClient, ref: Reference, reference: str, *,
                   missing_ok: bool = False) -> tuple[Descriptor, dict[str, Any]] | None:
    """One manifest or index of ``ref``'s repository, hashed and shape-checked (not
    stored); None when there is none and ``missing_ok``."""
    puller = _Puller(store, client, ref, Platform.host(), 1, lambda s: None)
    try:
        return puller._manifest(reference, Digest(reference) if reference.startswith(
            "sha256:") else None)
    except ManifestNotFound:
        if missing_ok:
            return None
        raise


def fetch_blob(store: Store, client: RegistryClient, repository: str, desc: Descriptor,
               what: str) -> None:
    """One blob of ``repository`` into the store, verified as every pulled blob is."""
    ref = Reference(f"{client.host}/{repository}", "latest")
    _Puller(store, client, ref, Platform.host(), 1, lambda s: None)._blob(desc, what)


@dataclass(frozen=True)
class Pulled:
    name: str                  # the store name it was tagged with
    manifest: Descriptor       # the platform's image manifest (in the store)
    image: Image
    index: Digest | None       # the index the reference named, if it named one


def pull(store: Store, registries: Registries, ref: Reference, platform: Platform, *,
         jobs: int = 4, log: Callable[[str], None] = lambda s: None) -> Pulled:
    """Fetch ``ref`` (a normalised reference) for ``platform`` into the store and tag it."""
    endpoints = registries.endpoints(ref.domain)
    mirrors: list[str] = []
    for i, client in enumerate(endpoints):
        try:
            return _Puller(store, client, ref, platform, jobs, log).run()
        except RegistryError as e:
            if i + 1 < len(endpoints):
                # a mirror that fails: the next one, then the registry itself
                log(f"mirror {client.host} failed ({e.message}); trying the next")
                mirrors.append(e.message)
                continue
            if mirrors:   # say what the mirrors said too: else it looks as if none was set
                raise RegistryError(f"{e.message} (after its mirrors: {'; '.join(mirrors)})",
                                    hint=e.hint) from None
            raise
    raise AssertionError("unreachable")


class _Puller:
    def __init__(self, store: Store, client: RegistryClient, ref: Reference,
                 platform: Platform, jobs: int, log: Callable[[str], None]) -> None:
        self.store = store
        self.client = client
        self.ref = ref
        self.repo = ref.repository
        self.platform = platform
        self.jobs = max(1, jobs)
        self.log = log
        self.scopes = (f"repository:{self.repo}:pull",)
        self.where = f"{client.host}/{self.repo}"
        self._raw: dict[Digest, bytes] = {}      # manifests as they arrived
        self._blob_digests: list[Digest] = []    # the config's and layers' digests

    def run(self) -> Pulled:
        reference = self.ref.digest or self.ref.tag or "latest"
        desc, doc = self._manifest(reference, Digest(self.ref.digest) if self.ref.digest
                                   else None)
        index = None
        if desc.media_type in mt.INDEXES:
            index = desc.digest
            chosen = self._choose(doc, desc)
            desc, doc = self._manifest(str(chosen.digest), chosen.digest)
            if desc.media_type not in mt.MANIFESTS:
                raise ImageError(f"{self.where}: {chosen.digest} is {desc.media_type!r}, not "
                                 "an image manifest (nested indexes are not followed)")
        self.log(f"pulling {self.ref} ({self.platform}) from {self.client.host}")
        self._image_blobs(desc, doc)
        self.store.blobs.put_bytes(self._raw[desc.digest], expected=desc.digest)
        name = str(self.ref.with_default_tag())
        image = load(self.store, desc.digest)     # readable before any name points at it

        self.store.names.tag(name, desc)
        # where these blobs live, so a push to another repository there can mount them
        for digest in (desc.digest, *self._blob_digests):
            self.store.add_blob_source(digest, f"{self.client.host}/{self.repo}")
        return Pulled(name, desc, image, index)

    # -- manifests -------------------------------------------------------------------------
    def _manifest(self, reference: str, expected: Digest | None
                  ) -> tuple[Descriptor, dict[str, Any]]:
        what = f"fetch the manifest of {self.ref}"
        response = self.client.request(
            "GET", f"/v2/{self.repo}/manifests/{reference}", scopes=self.scopes,
            headers={"Accept": MANIFEST_ACCEPT}, what=what, limit=MAX_MANIFEST_BYTES)
        if response.status_code == 404:
            raise ManifestNotFound(f"{self.where}: manifest for {reference} not found "
                                "(HTTP 404)",
                                hint="check the name and tag; 'distill images' lists what "
                                     "the store holds")
        if response.status_code != 200:
            raise self.client.error(response, what, self.repo)
        data = response.content
        digest = Digest.of_bytes(data)
        if expected is not None and digest != expected:
            raise DigestMismatchError(f"{self.where}: the manifest sent for {expected} "
                                      f"hashes to {digest}; nothing was kept")
        doc = load_json_doc(data, f"manifest {digest}")
        media_type = doc.get("mediaType")
        if not isinstance(media_type, str) or not media_type:
            header = response.headers.get("content-type", "").split(";")[0].strip()
            media_type = header if header in mt.INDEXES + mt.MANIFESTS else (
                mt.OCI_INDEX if "manifests" in doc else mt.OCI_MANIFEST)
        if media_type in SCHEMA1:
            raise ImageError(f"{self.where}: {reference} is a Docker schema 1 image, which "
                             "distill does not read", hint="push it again with a current "
                             "Docker or skopeo (schema 2)")
        if media_type not in mt.INDEXES + mt.MANIFESTS:
            raise ImageError(f"{self.where}: {reference} has media type {media_type[:100]!r}, "
                             "not an image manifest or index")
        self._raw[digest] = data
        return Descriptor(media_type, digest, len(data)), doc

    def _choose(self, index: dict[str, Any], desc: Descriptor) -> Descriptor:
        what = f"image index {desc.digest}"
        entries = index.get("manifests")
        if not isinstance(entries, list):
            raise ImageError(f"{self.where}: {what} has no list of manifests")
        manifests = [descriptor(e, f"{what}: manifests[{i}]") for i, e in enumerate(entries)]
        offered = [m for m in manifests if m.platform is not None]
        for m in offered:
            assert m.platform is not None
            if self.platform.matches(m.platform):
                return m
        names = sorted({str(m.platform.normalized()) for m in offered
                        if m.platform is not None and m.platform.os != "unknown"})
        raise ImageError(f"{self.ref}: no image for platform {self.platform}; the index "
                         f"offers {', '.join(names) or 'no platforms'}",
                         hint="choose one with --platform (or FROM --platform=…)")

    # -- blobs -----------------------------------------------------------------------------
    def _image_blobs(self, desc: Descriptor, doc: dict[str, Any]) -> None:
        what = f"manifest {desc.digest}"
        config_desc, layers = manifest_parts(doc, f"{self.where}: {what}")
        for i, layer in enumerate(layers):
            check_media_type(layer.media_type, f"layer {i} ({layer.digest})")
        if config_desc.size > MAX_CONFIG_BYTES:
            raise ImageError(f"{self.where}: config {config_desc.digest} is "
                             f"{config_desc.size} bytes; configs over {MAX_CONFIG_BYTES} "
                             "bytes are refused")
        self._blob_digests = [config_desc.digest, *(layer.digest for layer in layers)]
        self._blob(config_desc, f"config {config_desc.digest}")
        config = config_from_json(
            load_json_doc(self.store.blobs.read(config_desc.digest),
                          f"config {config_desc.digest}"), f"config {config_desc.digest}")
        if not self.platform.matches(config.platform):
            # a single-platform image (or an index entry that lies about its platform):
            # built upon, it would make an image labelled for one platform holding
            # another's binaries (checked before any layer is fetched)
            raise ImageError(f"{self.ref} is an image for {config.platform.normalized()}, "
                             f"not {self.platform.normalized()}",
                             hint="build for its platform (--platform, FROM --platform=), or "
                                  "push an image for this one")
        if len(config.diff_ids) != len(layers):
            raise ImageError(f"{self.where}: {what} lists {len(layers)} layers but its config "
                             f"has {len(config.diff_ids)} diff_ids")
        todo = list(zip(layers, config.diff_ids))
        if not todo:
            return
        with ThreadPoolExecutor(max_workers=min(self.jobs, len(todo)),
                                thread_name_prefix="pull") as pool:
            futures = [pool.submit(self._layer, layer, diff_id) for layer, diff_id in todo]
            # wait for every download (none is left writing), then raise the first failure
            failure = next((e for e in [f.exception() for f in futures] if e), None)
            if failure is not None:
                raise failure

    def _layer(self, desc: Descriptor, claimed: Digest) -> None:
        """Download a layer blob, verified against its digest. Its diff_id is not computed
        here but when the layer is first unpacked (as containerd does): the snapshot is
        named by the diff_id computed from the bytes then, a layer that does not unpack to
        ``claimed`` is refused there, and a pull does not decompress every layer twice
        (once here, once to unpack)."""
        self._blob(desc, f"layer {desc.digest}")

    def _blob(self, desc: Descriptor, what: str) -> None:
        """Download one blob into the store, verified; resumes a dropped transfer."""
        if self.store.blobs.has(desc.digest):
            return
        path = f"/v2/{self.repo}/blobs/{desc.digest}"
        retry = self.client.retry
        # one budget for the whole download: the statuses retried inside each request
        # and the drops resumed here add up (a server alternating five 503s and a cut
        # body gets Retry.attempts requests, not their square)
        budget = Budget(retry.attempts)
        drops = 0
        with self.store.blobs.incoming(desc.digest, desc.size, f"{self.where}: {what}") as blob:
            while True:
                headers = {"Range": f"bytes={blob.size}-"} if blob.size else {}
                try:
                    with self.client.stream("GET", path, scopes=self.scopes, headers=headers,
                                            what=f"download {what}", follow=True,
                                            budget=budget) as response:
                        if response.status_code == 206 and blob.size:
                            if not response.headers.get("content-range", "").startswith(
                                    f"bytes {blob.size}-"):
                                blob.restart()   # not the range asked for: start over
                                continue
                        elif response.status_code == 200:
                            if blob.size:
                                blob.restart()   # the server ignored Range
                        else:
                            raise self.client.error(response, f"download {what}", self.repo)
                        # no chunk size: httpx would hold back up to that much, and a
                        # drop would lose it (the resume would start from less, or 0)
                        started, got = time.monotonic(), blob.size
                        for chunk in response.iter_raw():
                            blob.write(chunk)
                            _check_rate(blob.size - got, time.monotonic() - started, what)
                except (httpx.TransportError, httpx.StreamError, _TooSlow) as e:
                    drops += 1
                    if budget.left <= 0:
                        raise RegistryError(f"{self.where}: cannot download {what}: the "
                                            f"connection failed ({e}); {retry.attempts} "
                                            "tries spent") from e
                    time.sleep(retry.delay(drops))
                    continue
                if blob.size >= desc.size:
                    return
                drops += 1     # a body that ended early without an error: resume it
                if budget.left <= 0:
                    raise RegistryError(f"{self.where}: cannot download {what}: the body "
                                        f"ended after {blob.size} of {desc.size} bytes")


#: A blob transfer slower than this on average (after the grace period) is dropped and
#: resumed, as a stalled connection is: a server trickling bytes cannot hold a pull.
MIN_RATE = 1024          # bytes per second
RATE_GRACE = 60.0        # seconds


class _TooSlow(Exception):
    pass


def _check_rate(received: int, elapsed: float, what: str) -> None:
    if elapsed > RATE_GRACE and received < MIN_RATE * elapsed:
        raise _TooSlow(f"{what} arrived at {received / elapsed:.0f} bytes/s")
