"""distill build when there is no record to replay: read the Dockerfile and the context,
plan, build, write the outputs (the flags, as `docker buildx build` spells them, and the
replay are in cli/build_flags.py)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from distill import phases
from distill.builder import memo
from distill.builder.context import DOCKERFILE, BuildContext, read_dockerfile
from distill.builder.export import REFERRER_OUTPUTS, OutputSpec, export
from distill.builder.results import BuildResults
from distill.builder.scheduler import Builder, BuildResult
from distill.builder.secrets import SecretStore, parse_ssh_specs
from distill.cli.progress import make_progress
from distill.cli.render import print_sizes, stderr_console
from distill.dockerfile.parser import parse
from distill.dockerfile.typed import build_dockerfile
from distill.errors import UsageError
from distill.formats.stored import tag_in_store, with_known_sizes
from distill.image.image import Image
from distill.oci.platform import Platform
from distill.oci.reference import normalize_name
from distill.plan.plan import SOURCE_DATE_EPOCH as SDE
from distill.plan.plan import BuildPlan, make_plan
from distill.registry.registries import Registries
from distill.registry.resolve import ImageSource
from distill.report.sizes import BuildSizes, StageSize, StepSize, compressed_size, image_size
from distill.sandbox import rootless
from distill.store.store import Store

if TYPE_CHECKING:
    from rich.console import Console

    from distill.formats.referrers import Referrer


#: Entitlements ``--allow`` grants, as buildx spells them.
ENTITLEMENTS = ("network.host",)


def _entitlements(values: list[str]) -> frozenset[str]:
    granted = {e.strip() for v in values for e in v.split(",") if e.strip()}
    for name in sorted(granted):
        if name == "security.insecure":
            raise UsageError("--allow security.insecure is not supported: RUN "
                             "--security=insecure would give a RUN the host's privileges")
        if name not in ENTITLEMENTS:
            raise UsageError(f"unknown entitlement {name!r} for --allow",
                             hint="known: " + ", ".join(ENTITLEMENTS))
    return frozenset(granted)


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    out = {}
    for v in values:
        key, eq, value = v.partition("=")
        if not key:
            raise UsageError(f"{flag} {v!r}: expected NAME=VALUE")
        if not eq:
            value = os.environ.get(key, "")  # --build-arg NAME takes the caller's env, as docker
        out[key] = value
    return out


def source_date_epoch(plan: BuildPlan) -> int | None:
    """SOURCE_DATE_EPOCH (reproducible-builds.org) as BuildKit reads it: the build arg
    (which, as buildx does, the caller's environment variable sets when no --build-arg
    does), else a default the Dockerfile gives it as a global ARG. It sets the image's
    times and caps the file times of every layer the build makes."""
    sde = plan.build_args.get(SDE, plan.global_args.get(SDE, ""))
    if not sde:
        return None
    if not sde.isascii() or not sde.isdigit():
        raise UsageError(f"SOURCE_DATE_EPOCH={sde!r} is not a number of seconds",
                         hint="e.g. SOURCE_DATE_EPOCH=$(git log -1 --pretty=%ct)")
    return int(sde)


def _created(sde: int | None, from_cache: str | None = None) -> str:
    """SOURCE_DATE_EPOCH; else when the cached steps first ran (a rebuild is the same
    image); else now."""
    if sde is None and from_cache:
        return from_cache
    ts = datetime.fromtimestamp(sde, UTC) if sde is not None \
        else datetime.now(UTC).replace(microsecond=0)
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


class _LazyConsole:
    """rich's console for stderr, made at the first line printed (a quiet build that
    prints only its digest never loads rich)."""

    def __init__(self) -> None:
        self._console: Console | None = None

    def print(self, *objects: object, markup: bool | None = None) -> None:
        if self._console is None:
            self._console = stderr_console()
        self._console.print(*objects, markup=markup)


def build_sizes(store: Store, result: BuildResult, image: Image) -> BuildSizes:
    """What each stage's base weighed, what each of its layer steps added and took."""
    stages = []
    for s in result.stages:
        steps = tuple(StepSize(r.title.split("] ", 1)[-1], r.added, r.seconds,
                               r.outcome == "CACHED")
                      for r in s.steps if r.outcome in ("DONE", "CACHED"))
        stages.append(StageSize(s.name or f"stage {s.index}", s.source,
                                image_size(with_known_sizes(store, s.base)),
                                image_size(with_known_sizes(store, s.image)), s.seconds,
                                steps))
    return BuildSizes(tuple(stages), image_size(with_known_sizes(store, image)),
                      compressed_size(image))


def _output_name(output: OutputSpec | None) -> str:
    if output is None or output.type == "image":
        return "distill's store"
    return f"--output type={output.type}"


def _sbom_referrer(store: Store, image: Image, names: tuple[str, ...],
                   kind: str) -> Referrer:
    """The image's SBOM (as ``distill analyze --sbom`` writes it), attached to it as an
    OCI referrer whose blobs are in the store."""
    from distill.formats.referrers import CYCLONEDX_JSON, SPDX_JSON, attach
    from distill.report import sbom
    from distill.report.analyze import analyze
    from distill.report.inventory import collectors

    analysis = analyze(store, image, names[0] if names else "", collectors())
    subject = sbom.Subject.of(analysis)
    if kind == "cyclonedx":
        return attach(store, image, CYCLONEDX_JSON, sbom.to_json(sbom.cyclonedx(subject)))
    return attach(store, image, SPDX_JSON, sbom.to_json(sbom.spdx(subject)))


def run(args: argparse.Namespace) -> int:
    try:        # what the build reads, before it reads it (builder/memo.py)
        before = memo.Inputs(args) if memo.replayable(args) else None
    except OSError:
        before = None
    context = Path(args.context)
    if not context.is_dir():
        raise UsageError(f"build context {args.context!r} is not a directory")
    dockerfile = Path(args.file) if args.file else context / DOCKERFILE
    text = read_dockerfile(context, Path(args.file) if args.file else None)
    if len(args.output) > 1:
        raise UsageError("only one --output is supported")
    output = OutputSpec.parse(args.output[0]) if args.output else None
    if args.push:
        if output is not None and output.type != "image":
            raise UsageError(f"--push cannot be combined with --output type={output.type}",
                             hint="--push is --output type=registry")
        output = replace(output or OutputSpec("image"), push=True)
    if output is not None:
        output.check()
    if args.report:      # said before the build, not after it
        report_dir = Path(args.report).parent
        if not report_dir.is_dir() or not os.access(report_dir, os.W_OK):
            raise UsageError(f"--report {args.report}: cannot write in {report_dir}")
    if args.sbom and not (output is not None and output.carries_referrers):
        raise UsageError(f"--sbom needs an output that carries it: {REFERRER_OUTPUTS}",
                         hint=f"this build's output is {_output_name(output)}")
    names = tuple(normalize_name(t) for t in args.tag)
    if output is not None and output.push and not (output.names or names):
        raise UsageError("pushing needs a name for the image", hint="-t REGISTRY/REPO:TAG")
    build_args = _pairs(args.build_arg, "--build-arg")
    if os.environ.get(SDE) and SDE not in build_args:   # as buildx passes it on
        build_args[SDE] = os.environ[SDE]
    named = {}
    for spec in args.build_context:
        key, eq, value = spec.partition("=")
        if not key or not eq or not value:
            raise UsageError(f"--build-context {spec!r}: expected NAME=SOURCE",
                             hint="e.g. --build-context base=oci-layout://./layout:tag")
        named[key] = value

    results = BuildResults.prepare(iidfile=args.iidfile, metadata_file=args.metadata_file,
                                   load=args.load, output=output)
    quiet = args.quiet or args.progress == "quiet"
    console = _LazyConsole()

    progress = make_progress(args.progress, quiet)

    df = build_dockerfile(parse(text, str(dockerfile)))
    plan = make_plan(df, target=args.target, build_args=build_args,
                     named_contexts=frozenset(k.lower() for k in named),
                     platform=Platform.from_flag(args.platform))
    sde = source_date_epoch(plan)
    if args.cache_from or args.cache_to:
        from distill.builder.cache_exchange import CacheSpec, export_cache, import_caches
    cache_from = [CacheSpec.parse(c, export=False) for c in args.cache_from]
    cache_to = [CacheSpec.parse(c, export=True) for c in args.cache_to]
    store = Store()
    registries = Registries()

    note = progress.note          # pulls, cache import and export
    for said in rootless.notes():   # once per build: what rootless does differently here
        note(said)
    images = ImageSource(store, registries, pull=args.pull, jobs=max(1, args.jobs),
                         log=note)
    builder = Builder(store, context=BuildContext.load(context, dockerfile), named_contexts=named,
                      # quiet: only the image id on stdout, as `docker build -q`; a
                      # failed RUN's last lines still show in its error
                      no_cache=args.no_cache, progress=progress, mtime_clamp=sde,
                      secrets=SecretStore.parse(args.secret), ssh=parse_ssh_specs(args.ssh),
                      allow=_entitlements(args.allow), images=images,
                      cache_from=import_caches(store, registries, cache_from, log=note)
                      if cache_from else (),
                      compression=output.compression if output else None,
                      force_compression=output.force_compression if output else False)
    started = time.monotonic()
    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    with progress:         # the live view, drawn while the steps run
        result = builder.build(plan, jobs=args.jobs)
    image = result.image.with_created(_created(sde, builder.created_from_cache(plan)))
    if output is not None:
        def pushed(line: str) -> None:
            if not quiet:
                print(line, file=sys.stderr, flush=True)

        referrers = (_sbom_referrer(store, image, output.names or names, args.sbom),) \
            if args.sbom else ()
        for warning in export(store, image, output, names, registries=registries,
                              jobs=max(1, args.jobs), log=pushed, referrers=referrers):
            console.print(f"warning: {warning}", markup=False)
    elif names:
        tag_in_store(store, image, names)
    for spec in cache_to:
        export_cache(store, registries, spec, builder.cache_entries(plan, spec.mode),
                     log=note)
    results.deliver(store, image, names,
                    log=lambda line: None if quiet else console.print(line, markup=False))
    elapsed = time.monotonic() - started
    warnings = [f"warning: build args not consumed: {', '.join(plan.unused_build_args)}"
                ] if plan.unused_build_args else []
    for warning in warnings:
        console.print(warning)
    sizes = build_sizes(store, result, image)
    if not quiet:
        print_sizes(stderr_console(), sizes, f"built in {elapsed:.1f}s")
    if args.report:
        from distill.cli.build_report import write_report

        write_report(Path(args.report), store, builder, result, image, sizes, names)
    if before is not None:
        memo.record(store.root, before, args, digest=str(image.digest),
                    blobs=[str(image.digest), str(image.config_descriptor().digest),
                           *(str(layer.compressed.digest) for layer in image.layers)],
                    names=names, lines=progress.titles(), sizes=sizes.to_dict(),
                    warnings=warnings, fetched=builder.fetched_remote)
    phases.enter("done")
    # stdout carries the image's digest, unless an output is written there (-o -)
    print(image.digest, file=sys.stderr if output is not None and output.dest == "-"
          else sys.stdout)
    return 0
