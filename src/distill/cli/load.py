"""distill load: images from a tar, as `docker load` takes them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import BinaryIO

from distill.cli.render import stderr_console
from distill.errors import UsageError
from distill.formats.image_archive import load_archive
from distill.formats.stored import tag_in_store
from distill.oci.reference import normalize_reference
from distill.store.store import Store


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("load", help="load images from a tar archive (docker save output, "
                                    "or an OCI layout) into the store")
    p.add_argument("-i", "--input", metavar="FILE",
                   help="read from FILE instead of stdin (plain, gzip or xz)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.input:
        path = Path(args.input)
        if not path.is_file():
            raise UsageError(f"{args.input}: no such file")
        with open(path, "rb") as f:
            return _load(f, args.input, args.quiet)
    if sys.stdin.isatty():
        raise UsageError("requested load from stdin, but stdin is a terminal",
                         hint="distill load -i FILE, or distill load < FILE")
    return _load(sys.stdin.buffer, "stdin", args.quiet)


def _load(stream: BinaryIO, what: str, quiet: bool) -> int:
    store = Store()
    loaded = load_archive(store, stream, what)
    for item in loaded:
        for name in item.names:
            old = store.names.resolve(name)
            if old is not None and old.digest != item.image.digest and not quiet:
                # as docker load says it when a name moves to another image
                print(f"The image {_familiar(name)} already exists, renaming the old one "
                      f"with ID {old.digest} to empty string")
            tag_in_store(store, item.image, (name,))
        if quiet:
            continue
        for name in item.names:
            print(f"Loaded image: {_familiar(name)}")
        if not item.names:
            print(f"Loaded image ID: {item.image.digest}")
            stderr_console().print(
                f"warning: {item.image.digest} has no name: 'distill prune' removes it",
                markup=False)
    return 0


def _familiar(name: str) -> str:
    """``docker.io/library/app:1`` as Docker shows it: ``app:1``."""
    return normalize_reference(name).familiar
