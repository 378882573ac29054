"""distill images / distill import."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

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
    store = Store()
    table = Table(box=None)
    for col in ("NAME", "DIGEST", "LAYERS", "SIZE"):
        table.add_column(col)
    for name, desc in store.names.entries():
        image = load(store, desc.digest)
        table.add_row(name, str(desc.digest)[:19], str(len(image.layers)),
                      human(image.compressed_size()))
    Console().print(table)
    return 0


def run_import(args: argparse.Namespace) -> int:
    store = Store()
    image = import_rootfs(store, Path(args.tarball))
    tag_in_store(store, image, (args.name,))
    print(f"{normalize_name(args.name)} {image.digest}")
    return 0
