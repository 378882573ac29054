"""Pushing an image from the store to a registry, as the distribution API intends.

Each blob is first asked for (``HEAD``): one the repository has is skipped. One that
another repository of the same registry is known to hold (distill pulled or pushed it
there) is cross-mounted (``POST …/uploads/?mount=…&from=…``), so no bytes move. The rest
are uploaded: in one ``PUT`` when they are small enough to resend whole on a failure,
otherwise in ``PATCH`` chunks (at least the registry's ``OCI-Chunk-Min-Length``) closed by
a ``PUT`` with the digest. The manifest goes last, so the registry never names an image
whose blobs it does not have. The pushed manifest's digest is computed here and compared
with the one the registry reports.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import httpx

from distill.errors import RegistryError
from distill.formats.layout_import import descriptor, load_json_doc
from distill.oci import mediatypes as mt
from distill.oci.descriptor import Descriptor
from distill.oci.digest import Digest
from distill.oci.reference import Reference, normalize_reference
from distill.registry.client import RegistryClient
from distill.registry.registries import Registries
from distill.store.store import Store

#: Blobs up to this size go in one PUT (resent whole if the connection drops).
MONOLITHIC_MAX = 512 << 20
#: The size of each PATCH of a chunked upload.
CHUNK_SIZE = 128 << 20
_READ = 1 << 20


@dataclass(frozen=True)
class Pushed:
    reference: Reference
    manifest: Descriptor
    uploaded: int            # blobs whose bytes were sent
    mounted: int             # blobs cross-mounted from another repository
    existing: int            # blobs the repository already had


def push(store: Store, registries: Registries, manifest: Digest, ref: Reference, *,
         jobs: int = 4, log: Callable[[str], None] = lambda s: None,
         monolithic_max: int = MONOLITHIC_MAX, chunk_size: int = CHUNK_SIZE) -> Pushed:
    """Push the stored image ``manifest`` as ``ref`` (a normalised reference with a tag)."""
    client = registries.client(ref.domain)
    return _Pusher(store, client, ref, jobs, log, monolithic_max, chunk_size).run(manifest)


class _Pusher:
    def __init__(self, store: Store, client: RegistryClient, ref: Reference, jobs: int,
                 log: Callable[[str], None], monolithic_max: int, chunk_size: int) -> None:
        self.store = store
        self.client = client
        self.ref = ref
        self.repo = ref.repository
        self.jobs = max(1, jobs)
        self.log = log
        self.monolithic_max = monolithic_max
        self.chunk_size = chunk_size
        self.where = f"{client.host}/{self.repo}"
        self.scopes = (f"repository:{self.repo}:pull,push",)
        self._counts = {"uploaded": 0, "mounted": 0, "existing": 0}
        self._lock = threading.Lock()

    def run(self, manifest: Digest) -> Pushed:
        data = self.store.blobs.read(manifest)
        doc = load_json_doc(data, f"manifest {manifest}")
        media_type = doc.get("mediaType", mt.OCI_MANIFEST)
        if media_type not in mt.MANIFESTS:
            raise RegistryError(f"{manifest} is {media_type!r}; distill pushes image manifests")
        blobs = [descriptor(doc.get("config"), f"manifest {manifest}: config")]
        blobs += [descriptor(x, f"manifest {manifest}: layers[{i}]")
                  for i, x in enumerate(doc.get("layers") or [])]
        return self.send(blobs, data, media_type)

    def send(self, blobs: list[Descriptor], data: bytes, media_type: str) -> Pushed:
        """Every blob (in parallel), then the manifest ``data`` that names them."""
        manifest = Digest.of_bytes(data)
        for blob in blobs:
            if not self.store.blobs.has(blob.digest):
                raise RegistryError(f"cannot push {self.ref}: blob {blob.digest} is not in "
                                    "the store", hint="pull or build the image again")
        unique = list({b.digest: b for b in blobs}.values())
        with ThreadPoolExecutor(max_workers=min(self.jobs, len(unique)),
                                thread_name_prefix="push") as pool:
            futures = [pool.submit(self._blob, b) for b in unique]
            failure = next((e for e in [f.exception() for f in futures] if e), None)
        if failure is not None:
            raise failure
        tag = self.ref.tag or str(manifest)
        response = self.client.request(
            "PUT", f"/v2/{self.repo}/manifests/{tag}", scopes=self.scopes,
            headers={"Content-Type": media_type}, content=data,
            what=f"push the manifest of {self.ref}")
        if response.status_code not in (200, 201, 202):
            raise self.client.error(response, f"push the manifest of {self.ref}", self.repo)
        reported = response.headers.get("docker-content-digest")
        if reported and reported != str(manifest):
            raise RegistryError(f"{self.where}: the registry stored the manifest as {reported}, "
                                f"but it hashes to {manifest}")
        return Pushed(self.ref, Descriptor(media_type, manifest, len(data)),
                      **self._counts)

    # -- one blob -----------------------------------------------------------------------------
    def _count(self, what: str) -> None:
        with self._lock:
            self._counts[what] += 1

    def _blob(self, desc: Descriptor) -> None:
        if self._exists(desc):
            self._count("existing")
            return
        location = None
        for source in self.store.blob_sources(desc.digest):
            host, _, repo = source.partition("/")
            if host != self.client.host or repo == self.repo:
                continue
            mounted, location = self._mount(desc, repo)
            if mounted:
                self.store.add_blob_source(desc.digest, f"{self.client.host}/{self.repo}")
                self._count("mounted")
                return
            break   # the registry opened an upload instead: use it
        self._upload(desc, location)
        self.store.add_blob_source(desc.digest, f"{self.client.host}/{self.repo}")
        self._count("uploaded")

    def _exists(self, desc: Descriptor) -> bool:
        response = self.client.request("HEAD", f"/v2/{self.repo}/blobs/{desc.digest}",
                                       scopes=self.scopes, what=f"check blob {desc.digest}")
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise self.client.error(response, f"check blob {desc.digest}", self.repo)

    def _mount(self, desc: Descriptor, source_repo: str) -> tuple[bool, str | None]:
        """Ask the registry to link ``desc`` from ``source_repo``: (mounted, upload URL)."""
        scopes = (*self.scopes, f"repository:{source_repo}:pull")
        response = self.client.request(
            "POST", f"/v2/{self.repo}/blobs/uploads/", scopes=scopes,
            params={"mount": str(desc.digest), "from": source_repo},
            what=f"mount blob {desc.digest}")
        if response.status_code == 201:
            self.log(f"mounted {desc.digest} from {source_repo}")
            return True, None
        if response.status_code == 202:
            return False, self._location(response)
        return False, None

    def _start(self) -> tuple[str, int]:
        response = self.client.request("POST", f"/v2/{self.repo}/blobs/uploads/",
                                       scopes=self.scopes, what="start an upload")
        if response.status_code != 202:
            raise self.client.error(response, "start an upload", self.repo)
        minimum = response.headers.get("oci-chunk-min-length", "")
        return self._location(response), int(minimum) if minimum.isascii() and minimum.isdigit() \
            else 0

    def _location(self, response: httpx.Response) -> str:
        location: str | None = response.headers.get("location")
        if not location:
            raise RegistryError(f"{self.where}: the registry opened an upload without a "
                                "Location")
        try:
            url = urljoin(str(response.request.url), location)
        except ValueError:
            url = location
        if not self.client.same_origin(url):
            # credentials and our bytes go only to the registry we were asked to push to
            # (its scheme, host and port: never plain HTTP for an HTTPS registry)
            raise RegistryError(f"{self.where}: the registry sent the upload elsewhere "
                                f"({location[:200]!r})")
        return url

    def _upload(self, desc: Descriptor, location: str | None, retry: bool = True) -> None:
        minimum = 0
        if location is None:
            location, minimum = self._start()
        path = self.store.blobs.path(desc.digest)
        try:
            if desc.size <= self.monolithic_max:
                self._put(location, desc, lambda: _file_chunks(path, 0, desc.size), desc.size)
            else:
                self._chunked(location, desc, path, max(self.chunk_size, minimum))
        except RegistryError as e:
            # an upload session the registry forgot (it restarted, or a resend found it
            # closed): start once more from the beginning
            if retry and "BLOB_UPLOAD_UNKNOWN" in e.message:
                self._upload(desc, None, retry=False)
                return
            raise
        self.log(f"pushed {desc.digest} ({desc.size} bytes)")

    def _put(self, location: str, desc: Descriptor, body: Callable[[], Iterator[bytes]] | None,
             size: int) -> None:
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        response = self.client.request(
            "PUT", _with_digest(location, desc.digest), scopes=self.scopes, headers=headers,
            content=body if body is not None else b"", what=f"upload blob {desc.digest}")
        if response.status_code not in (201, 204):
            raise self.client.error(response, f"upload blob {desc.digest}", self.repo)

    def _chunked(self, location: str, desc: Descriptor, path: Path, chunk: int) -> None:
        offset = 0
        while offset < desc.size:
            end = min(offset + chunk, desc.size)
            response = self.client.request(
                "PATCH", location, scopes=self.scopes,
                headers={"Content-Type": "application/octet-stream",
                         "Content-Range": f"{offset}-{end - 1}",
                         "Content-Length": str(end - offset)},
                content=lambda o=offset, e=end: _file_chunks(path, o, e),  # type: ignore[misc]
                what=f"upload blob {desc.digest}")
            if response.status_code != 202:
                raise self.client.error(response, f"upload blob {desc.digest}", self.repo)
            location = self._location(response)
            offset = end
        self._put(location, desc, None, 0)


def _file_chunks(path: Path, start: int, end: int) -> Iterator[bytes]:
    with open(path, "rb") as f:
        f.seek(start)
        left = end - start
        while left > 0:
            data = f.read(min(_READ, left))
            if not data:
                raise RegistryError(f"blob {path.name} shrank while it was being pushed")
            left -= len(data)
            yield data


def _with_digest(location: str, digest: Digest) -> str:
    """The upload URL with ``digest=`` added to the query the registry gave (which holds
    its upload state and must be kept)."""
    sep = "&" if "?" in location else "?"
    return f"{location}{sep}digest={digest}"


def push_blobs_and_manifest(store: Store, registries: Registries, ref: Reference,
                            blobs: list[Descriptor], manifest: bytes, media_type: str, *,
                            jobs: int = 4, log: Callable[[str], None] = lambda s: None
                            ) -> Pushed:
    """Push any manifest (a build cache) whose blobs are all in the store, as ``ref``."""
    client = registries.client(ref.domain)
    return _Pusher(store, client, ref, jobs, log, MONOLITHIC_MAX, CHUNK_SIZE).send(
        blobs, manifest, media_type)


def push_names(store: Store, registries: Registries, manifest: Digest,
               names: Iterable[str], *, jobs: int = 4,
               log: Callable[[str], None] = lambda s: None) -> list[Pushed]:
    """Push one stored image under each of ``names`` (normalised names with tags)."""
    return [push(store, registries, manifest, normalize_reference(name).with_default_tag(),
                 jobs=jobs, log=log) for name in names]
