"""distill base: base images from Debian packages (distroless presets or a full Debian)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from distill.builder.export import OutputSpec, export
from distill.errors import UsageError
from distill.formats.rootfs import import_rootfs
from distill.formats.stored import tag_in_store
from distill.image.image import Image
from distill.oci.platform import Platform
from distill.oci.reference import familiar_name, normalize_name
from distill.sandbox.mmdebstrap import DEFAULT_MIRROR, mmdebstrap_tarball
from distill.store.store import Store


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "base", help="make a base image from Debian packages",
        description="PRESET is static, base, cc, python3, nodejs or java17 (optionally "
                    ":nonroot, :debug, :debug-nonroot), as Google's distroless images, "
                    "assembled from verified .deb files without running anything; or debian, "
                    "a full Debian made with mmdebstrap where apt works. With --lock, name "
                    "the preset the lock was written for.")
    p.add_argument("preset", nargs="?", help="static|base|cc|python3|nodejs|java17[:VARIANT] or debian")
    p.add_argument("--package", action="append", default=[], metavar="P",
                   help="packages to install (with their dependencies); repeatable")
    p.add_argument("-t", "--tag", action="append", default=[], help="name:tag (repeatable)")
    p.add_argument("--suite", default="bookworm")
    p.add_argument("--arch", default=Platform.host().architecture)
    p.add_argument("--mirror", default=DEFAULT_MIRROR)
    p.add_argument("--no-updates", dest="updates", action="store_false",
                   help="read only --suite, not also its -updates and -security suites "
                        "(which are read with Debian's own mirror and a stable codename)")
    p.add_argument("--lock", metavar="FILE", help="build exactly what this lock file pins")
    p.add_argument("--write-lock", metavar="FILE", help="write the resolved package set here")
    p.add_argument("-o", "--output", metavar="SPEC", help="as for distill build")
    p.set_defaults(run=run)


def _finish(store: Store, image: Image, args: argparse.Namespace, names: tuple[str, ...],
            output: OutputSpec | None) -> int:
    if output is not None:
        export(store, image, output, names, log=lambda line: print(line, file=sys.stderr))
    if names and output is None:
        tag_in_store(store, image, names)
    for name in names or ("(untagged)",):
        print(f"{familiar_name(name)} {image.digest}")
    return 0


def run(args: argparse.Namespace) -> int:
    names = tuple(normalize_name(t) for t in args.tag)
    output = OutputSpec.parse(args.output) if args.output else None
    if output is not None:
        output.check()
    if not names and output is None:
        raise UsageError("give -t NAME (to keep the image in the store) or --output")
    if output is not None and output.push and not (output.names or names):
        raise UsageError("pushing needs a name for the image", hint="-t REGISTRY/REPO:TAG")
    store = Store()
    if args.preset == "debian":
        if args.lock or args.write_lock:
            raise UsageError("lock files are for distroless presets; debian uses mmdebstrap")
        with tempfile.TemporaryDirectory(dir=store.blobs.tmp_dir, prefix="base-") as tmp:
            tarball = Path(tmp) / "rootfs.tar"
            mmdebstrap_tarball(tarball, suite=args.suite, arch=args.arch, mirror=args.mirror,
                               include=args.package)
            image = import_rootfs(store, tarball, platform=Platform("linux", args.arch),
                                  cmd=("bash",))
        return _finish(store, image, args, names, output)

    from distill.debian.archive import Archive
    from distill.debian.lock import Lock
    from distill.debian.sources import Sources, default_suites
    from distill.distroless.assemble import assemble, lock_selection
    from distill.distroless.presets import select

    selection = select(args.preset, tuple(args.package))
    lock = None
    if args.lock:
        try:
            lock = Lock.from_json(Path(args.lock).read_text())
        except FileNotFoundError:
            raise UsageError(f"lock file {args.lock} not found") from None
        mirror, suite, arch = lock.mirror, lock.suite, lock.arch
        locked = {rec.name for rec in lock.packages}
        missing = [name.partition("=")[0] for name in selection.wanted
                   if name.partition("=")[0] not in locked]
        if missing:
            raise UsageError(f"lock file {args.lock} does not pin {', '.join(missing)}, "
                             f"which {selection.label} needs",
                             hint="write a lock for this preset with --write-lock")
    else:
        mirror, suite, arch = args.mirror, args.suite, args.arch

    def log(line: str) -> None:
        print(f"# {line}", file=sys.stderr, flush=True)

    # The store keeps verified .deb files and indexes, content-addressed, under debs/, indexes/.
    # A lock pins every package's sha256: its release's archive is enough to fetch them.
    suites = [(mirror, suite)] if lock is not None or not args.updates else \
        default_suites(mirror, suite)
    with Sources([Archive(m, s, arch, cache_dir=store.root) for m, s in suites]) as sources:
        if lock is None:
            lock = lock_selection(sources, selection)
        if args.write_lock:
            Path(args.write_lock).write_text(lock.to_json())
        image = assemble(store, sources.primary, lock, selection, log)
    return _finish(store, image, args, names, output)
