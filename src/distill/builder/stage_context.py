"""What a step handler is given besides the stage's state: the stage's plan, the build's
inputs and settings, and the few services it calls (the step cache, the images a step
reads from). Never the builder itself: a handler sees only what is named here."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from distill.builder.contenthash import ContentHashes
from distill.builder.context import BuildContext
from distill.builder.progress import StageSteps
from distill.builder.remote import UrlRecords
from distill.builder.rootfs import RootfsManager
from distill.builder.secrets import SecretStore
from distill.dockerfile import instructions as ins
from distill.dockerfile.shell import Lexer
from distill.image.image import Image, Layer
from distill.plan.plan import PlannedStage
from distill.sandbox import ProcessGroup


@dataclass(frozen=True)
class CacheHit:
    """A step's cached result: its layer, or None for a step that changed no file."""

    layer: Layer | None


class StepCache(Protocol):
    """The build's step cache, by a step's key, for the stage ``stage``."""

    def cache_lookup(self, key: str, stage: int) -> CacheHit | None: ...

    def cache_store(self, key: str, layer: Layer | None, stage: int,
                    also: str | None = None) -> None: ...

    def cache_alias(self, key: str, existing: str, stage: int) -> None: ...


class StepSources(Protocol):
    """The images and directories a step may read from besides its own stage."""

    def stage_image(self, index: int) -> Image: ...

    def base_image(self, ref: str) -> Image: ...

    def local_context(self, name: str) -> Path | None: ...

    def note_remote_source(self) -> None:
        """An ADD names a URL or a git repository (such a build is never replayed)."""


@dataclass
class StageContext:
    """What a step handler may use besides the stage state."""

    planned: PlannedStage
    context: BuildContext
    lexer: Lexer
    build_args: Mapping[str, str]
    global_args: Mapping[str, str]
    platform_args: Mapping[str, str]
    rootfs: RootfsManager
    steps: StageSteps                   # the progress of the stage's steps
    hashes: ContentHashes               # context file digests through the stat cache
    url_records: UrlRecords             # what ADD's URLs answered before
    allow: frozenset[str]               # entitlements granted (--allow)
    secrets: SecretStore
    ssh: Mapping[str, str]
    processes: ProcessGroup             # every RUN's, killed when a stage fails
    cache: StepCache
    sources: StepSources
    current: int = -1
    #: an output ships this stage's layers (the target, or a stage it is built FROM):
    #: they are compressed as they are made; other stages' stay lazy
    shipped: bool = True

    def cache_lookup(self, key: str) -> CacheHit | None:
        return self.cache.cache_lookup(key, self.planned.stage.index)

    def cache_store(self, key: str, layer: Layer | None, also: str | None = None) -> None:
        self.cache.cache_store(key, layer, self.planned.stage.index, also)

    def cache_alias(self, key: str, existing: str) -> None:
        self.cache.cache_alias(key, existing, self.planned.stage.index)

    def _image(self, src: int | str) -> Image:
        return self.sources.stage_image(src) if isinstance(src, int) else \
            self.sources.base_image(src)

    def mount_source_image(self, name: str) -> Image:
        return self._image(self.planned.mount_sources[name])

    @contextmanager
    def mount_source(self, name: str, sandbox: bool = False) -> Iterator[Path]:
        """from='s rootfs as a throwaway writable view (rw binds write here); with
        ``sandbox``, the idmapped view a RUN step sees."""
        with self.rootfs.mounted(self.mount_source_image(name), sandbox=sandbox) as mount:
            yield mount.merged

    def copy_source_dir(self, inst: ins.Copy) -> Path | None:
        """The directory of a local --build-context that COPY --from names, if it does."""
        src = self.planned.copy_sources.get(self.planned.stage.instructions.index(inst))
        return self.sources.local_context(src) if isinstance(src, str) else None

    def copy_source_image(self, inst: ins.Copy) -> Image:
        return self._image(self.planned.copy_sources[
            self.planned.stage.instructions.index(inst)])
