"""distill base: base images from Debian packages."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from distill.build.export import normalize_name, tag_in_store
from distill.formats.rootfs import import_rootfs
from distill.oci.platform import Platform
from distill.sandbox.mmdebstrap import DEFAULT_MIRROR, mmdebstrap_tarball
from distill.store.store import Store


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("base", help="make a base image from Debian packages")
    p.add_argument("preset", choices=["debian"],
                   help="debian: a full Debian (mmdebstrap minbase) where apt works in RUN")
    p.add_argument("-t", "--tag", required=True, help="name:tag for the store")
    p.add_argument("--suite", default="bookworm")
    p.add_argument("--arch", default=Platform.host().architecture)
    p.add_argument("--mirror", default=DEFAULT_MIRROR)
    p.add_argument("--include", action="append", default=[], metavar="PACKAGE",
                   help="extra packages (repeatable)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    name = normalize_name(args.tag)
    store = Store()
    with tempfile.TemporaryDirectory(dir=store.blobs.tmp_dir, prefix="base-") as tmp:
        tarball = Path(tmp) / "rootfs.tar"
        mmdebstrap_tarball(tarball, suite=args.suite, arch=args.arch, mirror=args.mirror,
                           include=args.include)
        image = import_rootfs(store, tarball, platform=Platform("linux", args.arch),
                              cmd=("bash",))
    tag_in_store(store, image, (name,))
    print(f"{name} {image.digest}")
    return 0
