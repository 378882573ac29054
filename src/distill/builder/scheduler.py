"""Run a BuildPlan: stage by stage, instruction by instruction, with a layer cache."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from distill.builder import steps
from distill.builder.contenthash import ContentHashes
from distill.builder.context import BuildContext
from distill.builder.layerstep import layer_from_cache, layer_to_cache
from distill.builder.progress import Numbers, Progress, Silent, StageSteps, StepRecord
from distill.builder.remote import UrlRecords
from distill.builder.rootfs import RootfsManager
from distill.builder.secrets import SecretStore, sweep_stale_secrets
from distill.builder.stage_context import CacheHit, StageContext
from distill.builder.state import DEFAULT_PATH, StageState
from distill.builder.triggers import onbuild_triggers
from distill.dockerfile import instructions as ins
from distill.dockerfile.mounts import mount_from
from distill.dockerfile.shell import Lexer
from distill.errors import DistillError, SourceLocation, UsageError, os_failure
from distill.formats.oci_layout import import_layout
from distill.image.image import Image, Layer
from distill.oci.config import ImageConfig, RuntimeConfig
from distill.oci.digest import Digest
from distill.oci.platform import Platform
from distill.plan.plan import BuildPlan, PlannedStage, platform_args
from distill.registry.resolve import ImageSource, Wanted
from distill.sandbox import ProcessGroup
from distill.store.blobs import DEFAULT_COMPRESSION, Compression
from distill.store.store import Store

if TYPE_CHECKING:
    from distill.builder.cache_exchange import ImportedCache


@dataclass(frozen=True)
class NamedContext:
    """--build-context NAME=oci-layout://PATH[:TAG] | docker-image://REF | LOCAL_DIR"""

    kind: str                 # "oci-layout", "docker-image" or "local"
    path: Path = Path()
    ref: str | None = None

    @classmethod
    def parse(cls, spec: str) -> NamedContext:
        if spec.startswith("oci-layout://"):
            rest = spec[len("oci-layout://"):]
            path, ref = rest, None
            head, sep, tail = rest.rpartition(":")
            if sep and "/" not in tail and head:
                path, ref = head, tail
            return cls("oci-layout", Path(path), ref)
        if spec.startswith("docker-image://"):
            return cls("docker-image", ref=spec[len("docker-image://"):])
        if "://" in spec or spec.startswith("git@"):
            raise UsageError(f"unsupported --build-context source {spec!r}",
                             hint="distill takes oci-layout://PATH[:TAG], docker-image://REF "
                                  "(from its store) or a local directory")
        local = Path(spec)
        if not local.is_dir():
            raise UsageError(f"--build-context {spec!r}: no such directory")
        return cls("local", local.resolve())


@dataclass
class StageResult:
    index: int
    name: str | None
    base: Image
    image: Image
    seconds: float
    steps: list[StepRecord] = field(default_factory=list)
    source: str = ""            # what its FROM names


@dataclass
class BuildResult:
    image: Image
    stages: list[StageResult] = field(default_factory=list)


class Builder:
    def __init__(self, store: Store, *, context: BuildContext, named_contexts: Mapping[str, str] = {},
                 no_cache: bool = False, progress: Progress | None = None,
                 lexer: Lexer | None = None,
                 mtime_clamp: int | None = None, secrets: SecretStore | None = None,
                 ssh: Mapping[str, str] | None = None,
                 allow: frozenset[str] = frozenset(),
                 images: ImageSource | None = None,
                 cache_from: Sequence[ImportedCache] = (),
                 compression: Compression | None = None,
                 force_compression: bool = False) -> None:
        self.store = store
        # where FROM, COPY --from and RUN --mount from= images come from: the store,
        # then (when the caller gives registries) a registry
        self.images = images or ImageSource(store, None)
        self.context = context
        # file digests by stat, kept in the store per context directory
        self.hashes = ContentHashes(store.root / "contenthash" / (hashlib.sha256(
            os.fsencode(context.root)).hexdigest() + ".json"), store.blobs.tmp_dir)
        self.url_records = UrlRecords(store.root / "url-validators")   # ADD's downloads
        self.named = {k.lower(): NamedContext.parse(v) for k, v in named_contexts.items()}
        self.no_cache = no_cache
        self.progress = progress or Silent()
        self._numbers = Numbers()
        self.lexer = lexer or Lexer()
        self.rootfs = RootfsManager(store, mtime_clamp, compression or DEFAULT_COMPRESSION)
        # an output's compression= applies to the layers the build made (every layer
        # with force-compression); without one, blobs are kept as they are
        self._convert = compression is not None
        self._force_compression = force_compression
        self.secrets = secrets or SecretStore()
        self.ssh = dict(ssh or {})
        self.allow = allow  # entitlements granted (--allow), e.g. network.host
        self.processes = ProcessGroup()     # every RUN's, killed when a stage fails
        self.stage_images: dict[int, Image] = {}
        self.stage_args: dict[int, dict[str, str]] = {}   # ARG values at each stage's end
        self._bases: dict[tuple[str, Platform], Image] = {}
        self._bases_lock = threading.Lock()
        self.platform = Platform.host()     # the target platform, set by build()
        self.cache_from = tuple(cache_from)
        self.cache_used: dict[int, dict[str, dict[str, object]]] = {}  # stage -> key -> entry
        self._shipped: set[int] = set()     # stages whose layers an output ships
        self.fetched_remote = False         # an ADD named a URL or a git repository

    # -- cache ------------------------------------------------------------------------
    def cache_lookup(self, key: str, stage: int) -> CacheHit | None:
        """A step's result from the store's cache, else from a --cache-from cache."""
        if self.no_cache:
            return None
        value = self.store.cache_get(key)
        hit = layer_from_cache(value) if value is not None else None
        if hit is not None and hit.layer is not None and not self._still_there(hit.layer):
            hit = None
        if hit is None:
            value, hit = self._imported(key)
        if hit is None or value is None:
            return None
        self._record(stage, key, value)
        # the step's other key (by content), so that --cache-to exports it too
        also = value.get("also")
        if isinstance(also, str) and _is_key(also) and (
                other := self.store.cache_get(also)) is not None:
            self._record(stage, also, other)
        return hit

    def _still_there(self, layer: Layer) -> bool:
        """Whether the store still holds a cached layer: its blob, or for a lazy one its
        snapshot (pruning removes every snapshot) or a blob made from it."""
        if layer.blob is not None:
            return self.store.blobs.has(layer.blob.digest)
        return self.store.snapshot_path(layer.diff_id).is_dir() or \
            self.store.made_blob(layer.diff_id) is not None

    def _imported(self, key: str) -> tuple[dict[str, object] | None, CacheHit | None]:
        for cache in self.cache_from:
            try:
                value = cache.materialize(self.store, key)
            except DistillError as e:
                self.progress.note(f"warning: {e.message}")   # the message names the cache
                continue
            if value is not None:
                hit = layer_from_cache(value)
                if hit is not None:
                    self.store.cache_put(key, value)
                    return value, hit
        return None, None

    def cache_store(self, key: str, layer: Layer | None, stage: int,
                    also: str | None = None) -> None:
        """Store a step's result; ``also``: its key by content, stored with it."""
        value = layer_to_cache(layer, created=_now())
        if also is not None:
            self.store.cache_put(also, value)
            self._record(stage, also, value)
            value = {**value, "also": also}
        self.store.cache_put(key, value)
        self._record(stage, key, value)

    def cache_alias(self, key: str, existing: str, stage: int) -> None:
        """Store under ``key`` (a step's first key) the entry its content key
        ``existing`` has: the next build hits on ``key`` without reading content."""
        value = self.cache_used.get(stage, {}).get(existing) or self.store.cache_get(existing)
        if value is not None:
            value = {**value, "also": existing}
            self.store.cache_put(key, value)
            self._record(stage, key, value)

    def _record(self, stage: int, key: str, value: dict[str, object]) -> None:
        with self._bases_lock:
            self.cache_used.setdefault(stage, {})[key] = value

    def cache_entries(self, plan: BuildPlan, mode: str) -> dict[str, dict[str, object]]:
        """The cache entries this build used or made: every stage's (mode max) or those of
        the target and the stages it is built on (mode min), for --cache-to."""
        stages = [p.stage.index for p in plan.order] if mode == "max" else \
            _base_chain(plan)
        out: dict[str, dict[str, object]] = {}
        for index in stages:
            out.update(self.cache_used.get(index, {}))
        return {key: self._with_blob(value) for key, value in out.items()}

    def _with_blob(self, value: dict[str, object]) -> dict[str, object]:
        """A cache entry as another machine can use it: a lazy layer compressed now."""
        hit = layer_from_cache(value)
        if hit is None or hit.layer is None or hit.layer.blob is not None:
            return value
        layer = self.rootfs.materialize_layer(hit.layer)
        assert layer.blob is not None
        out = {k: v for k, v in value.items() if k != "snapshot"}
        return {**out, "blob": layer.blob.to_dict()}

    def created_from_cache(self, plan: BuildPlan) -> str | None:
        """When the newest step of the target's chain first ran, if each of its steps has
        a recorded time: a rebuild from the cache (here, or from --cache-from on another
        machine) makes the same image, with the same digest."""
        times = [v.get("created") for i in _base_chain(plan)
                 for v in self.cache_used.get(i, {}).values()]
        if not times or not all(isinstance(t, str) for t in times):
            return None
        return max(t for t in times if isinstance(t, str))

    # -- what steps read (StepSources) -------------------------------------------------
    def stage_image(self, index: int) -> Image:
        return self.stage_images[index]

    def local_context(self, name: str) -> Path | None:
        named = self.named.get(name.lower())
        return named.path if named is not None and named.kind == "local" else None

    def note_remote_source(self) -> None:
        self.fetched_remote = True

    # -- bases ------------------------------------------------------------------------
    def base_image(self, ref: str, platform: Platform | None = None) -> Image:
        """The image a FROM, COPY --from or RUN --mount from= names (not a stage)."""
        platform = platform or self.platform
        named = self.named.get(ref.lower())
        if named is None:
            return self.images.get(ref, platform)
        if named.kind == "docker-image":
            return self.images.get(named.ref or "", platform)
        with self._bases_lock:
            key = (ref, platform)
            if key not in self._bases:
                if named.kind == "local":
                    raise UsageError(f"build context {ref!r} is a local directory, not an "
                                     "image", hint="use it with COPY --from or RUN --mount "
                                                   "from=")
                self._bases[key] = import_layout(self.store, named.path, named.ref)
            return self._bases[key]

    def _wanted_images(self, plan: BuildPlan) -> list[Wanted]:
        """Every registry or store image the planned stages name."""
        wanted = []

        def want(ref: str, platform: Platform | None, where: SourceLocation) -> None:
            named = self.named.get(ref.lower())
            if named is not None and named.kind != "docker-image":
                return
            wanted.append(Wanted(named.ref or "" if named else ref,
                                 platform or plan.platform, where))

        for planned in plan.order:
            stage = planned.stage
            if planned.base.image is not None:
                want(planned.base.image, planned.base.platform, stage.source.location)
            for idx, src in planned.copy_sources.items():
                if isinstance(src, str):
                    want(src, None, stage.instructions[idx].location)
            for src in planned.mount_sources.values():
                if isinstance(src, str):
                    run = next(i for i in stage.instructions if isinstance(i, ins.Run)
                               and any(mount_from(m) == src for m in i.mounts))
                    want(src, None, run.location)
        return wanted

    # -- the build --------------------------------------------------------------------
    def build(self, plan: BuildPlan, jobs: int = 1) -> BuildResult:
        """Build the planned stages; up to ``jobs`` independent stages run at once."""
        sweep_stale_secrets()
        jobs = max(1, jobs)
        self.platform = plan.platform
        # every image the target needs, found (or pulled) before the first step runs;
        # all that are missing are reported at once
        self.images.resolve_all(self._wanted_images(plan))
        self._shipped = set(_base_chain(plan))
        try:
            done: dict[int, StageResult] = {}
            pending = list(plan.order)
            pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="stage")
            running: dict[Future[StageResult], PlannedStage] = {}
            try:
                while pending or running:
                    for planned in list(pending):
                        if len(running) < jobs and planned.dependencies <= done.keys():
                            pending.remove(planned)
                            running[pool.submit(self._build_stage, planned, plan)] = planned
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in finished:
                        planned = running.pop(future)
                        if future.exception() is not None:
                            # as BuildKit: the other stages are cancelled, their RUNs
                            # killed; the first failure is the build's error
                            self.processes.kill_all()
                            wait(running)
                        done[planned.stage.index] = future.result()
            except Exception:
                pool.shutdown(wait=True)
                raise
            except BaseException:
                # Ctrl-C or SIGTERM (raised in this thread only): the running RUNs are
                # killed and the stages are not waited for (a COPY would run to its
                # end); the CLI exits at once, which the store is safe against
                self.processes.kill_all()
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            pool.shutdown(wait=True)
        finally:
            self.hashes.save()   # what was hashed, also when a step failed
        # the target ships: a layer it got lazily (from a stage it is built on, found
        # in the cache) is compressed now, and with compression= so is each of its own
        target = self.stage_images[plan.target]
        convert: frozenset[Digest] = frozenset()
        if self._convert:
            base = done[_base_chain(plan)[-1]].base
            convert = frozenset(layer.diff_id for layer in target.layers) - (
                frozenset() if self._force_compression else
                frozenset(layer.diff_id for layer in base.layers))
        result = BuildResult(image=self.rootfs.materialize(target, convert))
        result.stages = [done[p.stage.index] for p in plan.order]
        return result

    def _build_stage(self, planned: PlannedStage, plan: BuildPlan) -> StageResult:
        started = time.monotonic()
        stage = planned.stage
        label = stage.name or str(stage.index)
        base = self._stage_base(planned, plan)
        steps_of_stage = StageSteps(self.progress, self._numbers)
        ctx = StageContext(planned, self.context, self.lexer, plan.build_args,
                           plan.global_args, platform_args(plan.platform), self.rootfs,
                           steps_of_stage, self.hashes, self.url_records, self.allow,
                           self.secrets, self.ssh, self.processes, cache=self, sources=self,
                           shipped=stage.index in self._shipped)
        # ONBUILD triggers of the base run first, as the stage's first instructions.
        state, triggers = onbuild_triggers(
            ctx, StageState(image=base, args=self._inherited_args(planned, base)), plan)
        instructions = (*triggers, *stage.instructions)
        steps_in_stage = len(instructions) + 1
        # FROM as it expanded (BuildKit's log shows the image it resolved)
        source = planned.base.image or ("scratch" if planned.base.is_scratch
                                        else stage.source.image)
        steps_of_stage.begin(f"[{label} 1/{steps_in_stage}] FROM {source}")
        for i, inst in enumerate(instructions):
            ctx.current = i
            steps_of_stage.begin(f"[{label} {i + 2}/{steps_in_stage}] "
                                 f"{' '.join(inst.original.split())[:120]}")
            handler = steps.HANDLERS[type(inst)]
            try:
                state = handler(ctx, state, inst)
            except DistillError as e:
                # stopped because another stage failed: BuildKit's CANCELED, not its error
                steps_of_stage.end("CANCELED" if self.processes.cancelled else "ERROR")
                raise e.at(inst.location) from None
            except OSError as e:    # the machine's refusal, shown at the step it stopped
                steps_of_stage.end("ERROR")
                if e.errno in (errno.ENOSPC, errno.EDQUOT):  # a step writes into the store
                    raise os_failure(e, "the step could not write into the store at",
                                     self.store.root).at(inst.location) from None
                raise os_failure(e, "the step could not finish").at(inst.location) from None
        steps_of_stage.close()
        self.stage_images[stage.index] = state.image
        self.stage_args[stage.index] = state.args
        return StageResult(stage.index, stage.name, base, state.image,
                           time.monotonic() - started, steps_of_stage.records,
                           source)

    def _inherited_args(self, planned: PlannedStage, base: Image) -> dict[str, str]:
        """A stage built on another stage of the Dockerfile starts with that stage's ARG
        values ("automatically inherited by other stages based on that stage": the
        Dockerfile reference, "Scope"); as in BuildKit, the image's Env is applied over
        them, so an ENV of the same name wins."""
        if planned.base.stage is None:
            return {}
        env = base.runtime.env_dict()
        return {k: v for k, v in self.stage_args.get(planned.base.stage, {}).items()
                if k not in env}

    def _stage_base(self, planned: PlannedStage, plan: BuildPlan) -> Image:
        base = planned.base
        if base.stage is not None:
            return self.stage_images[base.stage]
        if base.image is None:   # scratch: BuildKit's empty image has WorkingDir "/"
            image = Image(ImageConfig(platform=plan.platform,
                                      config=RuntimeConfig(working_dir="/")))
        else:
            try:
                image = self.base_image(base.image, base.platform)
            except DistillError as e:
                raise e.at(planned.stage.source.location) from None
        if "PATH" not in image.runtime.env_dict():
            image = image.with_runtime(image.runtime.with_env("PATH", DEFAULT_PATH))
        platform = base.platform or plan.platform
        return replace(image, config=replace(image.config, platform=platform)) \
            if image.config.platform != platform else image


def _is_key(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _base_chain(plan: BuildPlan) -> list[int]:
    """The target stage and the stages it is built FROM, in turn."""
    by_index = {p.stage.index: p for p in plan.order}
    chain = [plan.target]
    while (base := by_index[chain[-1]].base.stage) is not None:
        chain.append(base)
    return chain


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
