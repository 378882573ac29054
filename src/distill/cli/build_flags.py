"""``distill build``'s flags, as ``docker buildx build`` spells them. This module is all
that loads before a build starts: a no-change rebuild is replayed from its record
(builder/memo.py) without importing the builder, which ``distill.cli.build`` holds."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from distill.builder import memo


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("build", help="build an image from a Dockerfile")
    p.add_argument("context", help="build context directory")
    p.add_argument("-f", "--file", help="Dockerfile (default: CONTEXT/Dockerfile)")
    p.add_argument("-t", "--tag", action="append", default=[], help="name:tag (repeatable)")
    p.add_argument("--target", help="stage to build")
    p.add_argument("--build-arg", action="append", default=[], metavar="K=V")
    p.add_argument("--build-context", action="append", default=[],
                   metavar="NAME=oci-layout://PATH[:TAG]")
    p.add_argument("-o", "--output", action="append", default=[], metavar="SPEC")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--push", action="store_true",
                   help="push the image to the registry its -t names name "
                        "(--output type=registry)")
    p.add_argument("--cache-from", action="append", default=[], metavar="SPEC",
                   help="use a shared build cache: type=registry,ref=REF or "
                        "type=local,src=DIR (repeatable)")
    p.add_argument("--cache-to", action="append", default=[], metavar="SPEC",
                   help="export the build cache: type=registry,ref=REF[,mode=min|max] or "
                        "type=local,dest=DIR[,mode=min|max]")
    p.add_argument("--pull", action="store_true",
                   help="always look up the images the Dockerfile names at their registry "
                        "(without it, an image already in the store is used)")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]",
                   help="the platform to build for (default: this machine's)")
    p.add_argument("--secret", action="append", default=[], metavar="id=ID[,src=PATH|,env=VAR]",
                   help="a secret RUN --mount=type=secret can use (never stored in the image)")
    p.add_argument("--ssh", action="append", default=[], metavar="default|ID[=SOCKET]",
                   help="an ssh-agent socket RUN --mount=type=ssh can use "
                        "('default' = $SSH_AUTH_SOCK)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, metavar="N",
                   help="independent stages run in parallel, up to N at once (default: cores)")
    p.add_argument("--progress", choices=["auto", "plain", "tty", "quiet"], default="auto")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress output, only the image digest on stdout (--progress quiet)")
    p.add_argument("--iidfile", metavar="FILE", help="write the image ID (config digest) to FILE")
    p.add_argument("--metadata-file", metavar="FILE",
                   help="write the build result's digests and names to FILE (JSON)")
    p.add_argument("--load", action="store_true",
                   help="load the image into Docker's engine (--output type=docker | docker load)")
    p.add_argument("--allow", action="append", default=[], metavar="ENTITLEMENT",
                   help="grant an entitlement: network.host (RUN --network=host, ADD "
                        "from the build host's own services)")
    p.add_argument("--report", metavar="FILE.html",
                   help="write a self-contained HTML report: treemaps of the final image and "
                        "of the largest stage, each stage's size, the layers, the security "
                        "findings")
    # as buildx reads --sbom (a flag whose value comes only after "="): `--sbom .` is
    # --sbom=spdx and the context ".", never an SBOM format named "."
    p.add_argument("--sbom", nargs=0, action=_SbomFlag, default=None,
                   help="attach the image's SBOM as an OCI referrer, where the output "
                        "carries it (--output type=oci, or a push): --sbom (SPDX 2.3), "
                        "--sbom=cyclonedx (CycloneDX 1.5); --sbom=true is spdx, "
                        "--sbom=false none")
    p.add_argument(*(f"--sbom={value}" for value in SBOM_FORMATS), dest="sbom", nargs=0,
                   action=_SbomFlag, help=argparse.SUPPRESS)
    p.set_defaults(run=_run)


#: --sbom=VALUE -> the SBOM format (None: no SBOM), as buildx spells it
SBOM_FORMATS = {"spdx": "spdx", "cyclonedx": "cyclonedx", "true": "spdx", "false": None}


class _SbomFlag(argparse.Action):
    """``--sbom`` or ``--sbom=VALUE`` (each spelling of VALUE is an option string of its
    own, so argparse never takes the next word for it)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        value = (option_string or "").partition("=")[2]
        setattr(namespace, self.dest, SBOM_FORMATS[value] if value else "spdx")



def _run(args: argparse.Namespace) -> int:
    replayed = memo.replay(args)
    if replayed is None:
        # a build mounts: a private mount namespace first, before any thread starts
        from distill.sandbox.namespace import ensure_private_mount_namespace

        ensure_private_mount_namespace()
        from distill.cli.build import run

        return run(args)
    if not (args.quiet or args.progress == "quiet"):
        sys.stderr.write("".join(f"{line}\n" for line in memo.replayed_lines(replayed)))
        sys.stderr.flush()
        _print_table(replayed)
    print(replayed["digest"])
    return 0


def _print_table(value: dict[str, Any]) -> None:
    from distill.cli.render import print_sizes, stderr_console
    from distill.report.sizes import BuildSizes

    console = stderr_console()
    for warning in value["warnings"]:
        console.print(warning, markup=False)
    # the sizes are the image's; the times were the first build's, not this one's
    sizes = BuildSizes.from_dict(value["sizes"]).without_times()
    print_sizes(console, sizes, "no change since the last build: every step cached")
