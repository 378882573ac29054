"""distill images / distill import / distill prune."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from distill.formats.stored import load, tag_in_store
from distill.oci.reference import familiar_name, normalize_name
from distill.report.sizes import human
from distill.store.gc import prune
from distill.store.store import Store


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("images", help="list images in the local store")
    p.set_defaults(run=run_images)
    p = sub.add_parser("prune", help="remove what no tagged image needs (unpacked layers, "
                       "untagged layers, stale build cache)")
    p.add_argument("-a", "--all", action="store_true",
                   help="also the whole build cache, RUN cache mounts and Debian downloads")
    p.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    p.set_defaults(run=run_prune)
    p = sub.add_parser("import", help="make a base image from a root filesystem tarball")
    p.add_argument("tarball")
    p.add_argument("name")
    p.set_defaults(run=run_import)


def run_images(args: argparse.Namespace) -> int:
    """Plain columns (like `docker images`): names as Docker shows them (``python:3.12``
    for ``docker.io/library/python:3.12``), never cut short."""
    store = Store()
    rows = [("NAME", "DIGEST", "LAYERS", "SIZE")]
    for name, desc in store.names.entries():
        image = load(store, desc.digest)
        rows.append((familiar_name(name), str(desc.digest)[:19], str(len(image.layers)),
                     human(image.compressed_size())))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("   ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def run_prune(args: argparse.Namespace) -> int:
    """Like `docker builder prune`: asks first on a terminal unless -f, then reports."""
    what = ("everything but tagged images (including the build cache)" if args.all
            else "what no tagged image needs")
    if not args.force and sys.stdin.isatty():
        answer = input(f"This removes {what} from the store. Continue? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            return 0
    report = prune(Store(), all_cache=args.all)
    parts = [f"{n} {what}" for what, n in sorted(report.removed.items())]
    print("Deleted: " + (", ".join(parts) if parts else "nothing"))
    print(f"Total reclaimed space: {human(report.reclaimed)}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from distill.formats.rootfs import import_rootfs  # loads the sandbox's tar reader

    name = normalize_name(args.name)
    store = Store()
    image = import_rootfs(store, Path(args.tarball))
    tag_in_store(store, image, (name,))
    print(f"{familiar_name(name)} {image.digest}")
    return 0
