"""distill images / distill import."""

from __future__ import annotations

import argparse
from pathlib import Path

from distill.build.export import normalize_name, tag_in_store
from distill.formats.rootfs import import_rootfs
from distill.formats.stored import load
from distill.report.sizes import human
from distill.store.store import Store


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("images", help="list images in the local store")
    p.set_defaults(run=run_images)
    p = sub.add_parser("import", help="make a base image from a root filesystem tarball")
    p.add_argument("tarball")
    p.add_argument("name")
    p.set_defaults(run=run_import)


def run_images(args: argparse.Namespace) -> int:
    """Plain columns (like `docker images`): names are never shortened."""
    store = Store()
    rows = [("NAME", "DIGEST", "LAYERS", "SIZE")]
    for name, desc in store.names.entries():
        image = load(store, desc.digest)
        rows.append((name, str(desc.digest)[:19], str(len(image.layers)),
                     human(image.compressed_size())))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("   ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def run_import(args: argparse.Namespace) -> int:
    name = normalize_name(args.name)
    store = Store()
    image = import_rootfs(store, Path(args.tarball))
    tag_in_store(store, image, (name,))
    print(f"{name} {image.digest}")
    return 0
