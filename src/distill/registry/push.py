"""Pushing an image from the store to a registry, as the distribution API intends.

Each blob is first asked for (``HEAD``): one the repository has is skipped. One that
another repository of the same registry is known to hold (distill pulled or pushed it
there) is cross-mounted (``POST …/uploads/?mount=…&from=…``), so no bytes move. The rest
are uploaded: in one ``PUT`` when they are small enough to resend whole on a failure,
otherwise in ``PATCH`` chunks (at least the registry's ``OCI-Chunk-Min-Length``) closed by
a ``PUT`` with the digest. The manifest goes last, so the registry never names an image
whose blobs it does not have. The pushed manifest's digest is computed here and compared
with the one the registry reports.

A referrer (an SBOM, ``formats/referrers``) goes after its image, by digest. A registry
with the referrers API says so (``OCI-Subject`` on the manifest's answer, or ``GET
/v2/<repo>/referrers/<digest>`` answered 200) and lists it itself; for one without it
(distribution 2.8), the referrers tag ``sha256-<hex>`` holds an image index of the
subject's referrers, which is read, added to (once) and pushed again, as
distribution-spec 1.1 asks of clients.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx

from distill.errors import ImageError, RegistryError
from distill.formats.layout_import import descriptor, load_json_doc
from distill.formats.referrers import Referrer, referrers_tag
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
#: A referrers tag's index larger than this is refused (the size registries take).
MAX_INDEX_BYTES = 4 << 20
_ACCEPT = f"{mt.OCI_INDEX}, {mt.OCI_MANIFEST}, {mt.DOCKER_MANIFEST_LIST}, " \
    f"{mt.DOCKER_MANIFEST}"


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
        #: OCI-Subject of the last manifest's answer: the registry listed it as a referrer
        self.subject_header = ""

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
        self.subject_header = response.headers.get("oci-subject", "")
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


def push_referrers(store: Store, registries: Registries, names: Iterable[str],
                   referrers: Iterable[Referrer], *, jobs: int = 4,
                   log: Callable[[str], None] = lambda s: None) -> list[Pushed]:
    """Push each referrer once to every repository ``names`` name (after their image)."""
    repositories = list(dict.fromkeys(normalize_reference(n).name for n in names))
    return [push_referrer(store, registries, Reference(name), referrer, jobs=jobs, log=log)
            for referrer in referrers for name in repositories]


def push_referrer(store: Store, registries: Registries, repository: Reference,
                  referrer: Referrer, *, jobs: int = 4,
                  log: Callable[[str], None] = lambda s: None) -> Pushed:
    """Push ``referrer`` by digest to ``repository`` (a normalised name, no tag); where
    the registry has no referrers API, list it under the referrers tag."""
    client = registries.client(repository.domain)
    pusher = _Pusher(store, client, Reference(repository.name), jobs, log, MONOLITHIC_MAX,
                     CHUNK_SIZE)
    pushed = pusher.send(list(referrer.blobs), referrer.manifest, mt.OCI_MANIFEST)
    subject = referrer.subject.digest
    if pusher.subject_header != str(subject) and not _has_referrers_api(pusher, subject):
        _list_in_referrers_tag(pusher, referrer)
    return pushed


def _has_referrers_api(pusher: _Pusher, subject: Digest) -> bool:
    """Whether the registry answers ``GET /v2/<repo>/referrers/<digest>`` (a 404 says it
    has no such API; the body, which may be long, is not read)."""
    what = f"ask for the referrers of {subject}"
    with pusher.client.stream("GET", f"/v2/{pusher.repo}/referrers/{subject}",
                              scopes=pusher.scopes, headers={"Accept": mt.OCI_INDEX},
                              what=what) as response:
        if response.status_code == 200:
            return True
        if response.status_code in (404, 405, 501):
            return False
        raise pusher.client.error(response, what, pusher.repo)


def _list_in_referrers_tag(pusher: _Pusher, referrer: Referrer) -> None:
    """Add ``referrer`` to the index at the referrers tag of its subject (made if there is
    none; left alone if it lists it already)."""
    client, repo = pusher.client, pusher.repo
    tag = referrers_tag(referrer.subject.digest)
    where = f"{client.host}/{repo}:{tag}"
    path = f"/v2/{repo}/manifests/{tag}"
    response = client.request("GET", path, scopes=pusher.scopes, headers={"Accept": _ACCEPT},
                              what=f"read the referrers list {tag}", limit=MAX_INDEX_BYTES)
    if response.status_code == 404:
        doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
                               "manifests": []}
    elif response.status_code == 200:
        try:
            doc = load_json_doc(response.content, where)
        except ImageError as e:
            raise RegistryError(e.message) from None
        if doc.get("mediaType") != mt.OCI_INDEX or not isinstance(doc.get("manifests"), list):
            raise RegistryError(f"{where} is not an image index, so it cannot list the "
                                f"referrers of {referrer.subject.digest}",
                                hint=f"the tag {tag} is kept for that list (distribution-spec "
                                     "1.1); delete or move what it names")
    else:
        raise client.error(response, f"read the referrers list {tag}", repo)
    entries: list[Any] = doc["manifests"]
    ours = str(referrer.descriptor.digest)
    if any(isinstance(e, dict) and e.get("digest") == ours for e in entries):
        return
    doc["manifests"] = [*entries, referrer.index_entry()]
    data = json.dumps(doc, indent=2).encode()
    response = client.request("PUT", path, scopes=pusher.scopes,
                              headers={"Content-Type": mt.OCI_INDEX}, content=data,
                              what=f"push the referrers list {tag}")
    if response.status_code not in (200, 201, 202):
        raise client.error(response, f"push the referrers list {tag}", repo)
