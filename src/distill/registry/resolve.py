"""Where a build's images come from: the store, else a registry — as ``docker build``.

Without ``pull`` a name already in the store is used as it is (``docker build``'s
default); with it, tags are resolved again at the registry (``--pull``). A digest
reference is content-addressed, so a stored copy is always the same image.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from distill.errors import DistillError, ImageError, RegistryError, SourceLocation, UsageError
from distill.formats.stored import load
from distill.image.image import Image
from distill.oci.platform import Platform
from distill.oci.reference import DOCKER_HUB, Reference, normalize_reference
from distill.store.store import Store

if TYPE_CHECKING:
    from distill.registry.registries import Registries


def _not_found_hint(ref: Reference) -> str:
    if ref.domain == DOCKER_HUB:
        return (f"{ref.familiar} means {ref}; without access to Docker Hub, name a mirror "
                "for docker.io in registries.toml, or make a base with 'distill base' or "
                "'distill import'")
    return (f"is the registry {ref.domain} running, and is the name right? A base can also "
            "be made with 'distill base' or 'distill import', or named with --build-context "
            "NAME=oci-layout://PATH")


@dataclass(frozen=True)
class Wanted:
    """An image a build needs: its reference as written, for which platform, from where."""

    ref: str
    platform: Platform
    location: SourceLocation | None = None


class ImageSource:
    def __init__(self, store: Store, registries: Registries | None, *, pull: bool = False,
                 jobs: int = 4, log: Callable[[str], None] = lambda s: None) -> None:
        self.store = store
        self.registries = registries
        self.pull = pull
        self.jobs = jobs
        self.log = log
        self._images: dict[tuple[str, Platform], Image] = {}
        self._lock = threading.Lock()
        self._pulling: dict[tuple[str, Platform], threading.Lock] = {}

    def get(self, ref: str, platform: Platform) -> Image:
        """The image ``ref`` names, for ``platform``: from the store, else pulled."""
        try:
            normal = normalize_reference(ref).with_default_tag()
        except UsageError as e:    # a name from a Dockerfile: its error, not a flag's
            raise ImageError(e.message, hint=e.hint) from None
        key = (str(normal), platform.normalized())
        with self._lock:
            if key in self._images:
                return self._images[key]
            gate = self._pulling.setdefault(key, threading.Lock())
        with gate:   # one pull per image, however many stages ask at once
            with self._lock:
                if key in self._images:
                    return self._images[key]
            image = self._find(str(normal), platform, ref)
            with self._lock:
                self._images[key] = image
            return image

    def _find(self, name: str, platform: Platform, written: str) -> Image:
        """``name`` normalised; ``written`` as the Dockerfile or command line has it."""
        ref = normalize_reference(name)
        stored: Image | None = None
        desc = self.store.lookup(name)
        if desc is not None:
            stored = load(self.store, desc.digest)
            if (not self.pull or ref.digest) and platform.matches(stored.config.platform):
                return stored
        if self.registries is None:
            raise ImageError(f"image {name!r} is not in the store and pulling is off")
        try:
            from distill.registry.pull import pull  # the HTTP stack, only to pull

            return pull(self.store, self.registries, ref, platform, log=self.log).image
        except RegistryError as e:
            if stored is not None and not platform.matches(stored.config.platform):
                raise RegistryError(
                    f"image {written!r} in the store is for "
                    f"{stored.config.platform.normalized()}, not {platform.normalized()}, "
                    f"and pulling it failed: {e.message}",
                    hint="build for the image's platform, or make or pull one for "
                         f"{platform.normalized()}") from None
            if stored is not None:
                raise            # --pull of a stored image: the registry's error as it is
            raise RegistryError(
                f"image {written!r} not found: not in the store, and pulling it failed: "
                f"{e.message}", hint=e.hint or _not_found_hint(ref)) from None

    def resolve_all(self, wanted: Iterable[Wanted]) -> None:
        """Find every image at once (in parallel), before a build starts; report every
        one that cannot be found together, each with where the Dockerfile names it."""
        items = list(dict.fromkeys(wanted))
        if not items:
            return
        with ThreadPoolExecutor(max_workers=min(self.jobs, len(items)),
                                thread_name_prefix="resolve") as pool:
            futures = [(w, pool.submit(self.get, w.ref, w.platform)) for w in items]
            failures = [(w, e) for w, f in futures
                        if isinstance(e := f.exception(), DistillError)]
            others = [e for _, f in futures if (e := f.exception()) is not None
                      and not isinstance(e, DistillError)]
        if others:
            raise others[0]
        if len(failures) == 1:
            w, e = failures[0]
            raise e.at(w.location)
        if failures:
            lines = []
            for w, e in failures:
                where = f"{w.location}: " if w.location else ""
                lines.append(f"  {where}{w.ref}: {e.message}")
            raise ImageError(f"{len(failures)} images could not be found:\n" + "\n".join(lines),
                             hint=failures[0][1].hint)
