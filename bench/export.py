"""Exporting a large single-stage image, and distill's memory while it builds one.

* export: an image of about 830 MB (Debian bookworm minbase and one RUN layer of about
  760 MB: twelve copies of the base's /usr, real binaries and text) is written to an
  OCI archive by each builder from its own store, after an untimed build:
  ``distill build --output type=oci,dest=FILE`` (the steps cached),
  ``buildah push IMAGE oci-archive:FILE`` and ``docker save -o FILE IMAGE``;
* memory: the peak resident size of distill's process tree (GNU time's maximum RSS)
  while it builds, with no cache, an image holding a 1 GiB layer of random bytes and
  writes it to an OCI archive.

distill runs as installed (its modules byte-compiled). Times are wall-clock seconds;
ratios are other / distill.

    .venv/bin/python bench/export.py [--runs N] [--no-docker]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from buildah_storage import buildah_argv

from tests.helpers.dockerd import DOCKER_CLI, private_dockerd

DISTILL = str(Path(sys.executable).with_name("distill"))
INSTALLED = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
BIG = ("FROM {base}\n"
       "RUN for i in 1 2 3 4 5 6 7 8 9 10 11 12; do cp -a /usr /copy$i; done\n")
GIB = ("FROM debian:bookworm\n"
       "RUN head -c 1073741824 /dev/urandom > /big\n")


def sh(argv: list[str], env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(argv, env={**INSTALLED, **(env or {})}, capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(argv)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    started = time.monotonic()
    sh(argv, env)
    return time.monotonic() - started


def peak_rss_mib(argv: list[str], env: dict[str, str]) -> float:
    """GNU time's maximum resident set size of the command (the largest process of its
    tree), in MiB."""
    proc = subprocess.run(["/usr/bin/time", "-f", "MAXRSS %M", *argv],
                          env={**INSTALLED, **env}, capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(argv)} failed:\n{proc.stderr[-3000:]}")
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("MAXRSS ")][-1]
    return int(line.split()[1]) / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-docker", action="store_true")
    args = ap.parse_args()
    sh([sys.executable, "-m", "compileall", "-q", str(REPO / "src" / "distill")])
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="distill-bench-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        env = {"DISTILL_ROOT": str(work / "distill")}
        sh([DISTILL, "base", "debian", "-t", "debian:bookworm"], env)
        big = work / "big"
        big.mkdir()
        (big / "Dockerfile").write_text(BIG.format(base="debian:bookworm"))
        (big / "buildah.Dockerfile").write_text(BIG.format(base="localhost/debian:bookworm"))
        sh([DISTILL, "build", "--progress", "quiet", "-t", "big:bench", str(big)], env)
        base_layout = work / "base-layout"
        base_ctx = work / "base-ctx"
        base_ctx.mkdir()
        (base_ctx / "Dockerfile").write_text("FROM debian:bookworm\n")
        sh([DISTILL, "build", "--progress", "quiet", "-t", "debian:bookworm", "--output",
            f"type=oci,dest={base_layout},tar=false", str(base_ctx)], env)

        # buildah: the same base, the same Dockerfile
        home = work / "buildah"
        image_id = sh(buildah_argv(home, "pull", "--quiet",
                                   f"oci:{base_layout}:bookworm")).split()[-1]
        sh(buildah_argv(home, "tag", image_id, "localhost/debian:bookworm"))
        sh(buildah_argv(home, "build", "--isolation=chroot", "--pull=never", "--layers",
                        "-t", "big:bench", "-f", str(big / "buildah.Dockerfile"), str(big)))

        def export_distill(run: int) -> float:
            return timed([DISTILL, "build", "--progress", "quiet", "-t", "big:bench",
                          "--output", f"type=oci,dest={work / f'd{run}.tar'}", str(big)], env)

        def export_buildah(run: int) -> float:
            return timed(buildah_argv(home, "push", "--quiet", "big:bench",
                                      f"oci-archive:{work / f'b{run}.tar'}"))

        exporters = {"distill": export_distill, "buildah": export_buildah}

        def measure() -> None:
            for run in range(args.runs):
                for name, export in exporters.items():
                    t = export(run)
                    times.setdefault(name, []).append(t)
                    print(f"export run {run + 1}: {name:8} {t:7.2f}s", flush=True)
                    for leftover in work.glob("[dbs]*.tar"):
                        leftover.unlink()

        if args.no_docker or shutil.which("dockerd") is None:
            measure()
        else:
            archive = work / "base.docker.tar"
            sh([DISTILL, "build", "--progress", "quiet", "-t", "debian:bookworm", "--output",
                f"type=docker,dest={archive}", str(base_ctx)], env)
            with private_dockerd(work / "docker") as docker:
                docker("load", "-i", str(archive))
                subprocess.run([DOCKER_CLI, "--host", docker.host, "build", "--network=host",
                                "-t", "big:bench", str(big)],
                               env={**os.environ, "DOCKER_BUILDKIT": "1"}, check=True,
                               capture_output=True)

                def export_docker(run: int) -> float:
                    started = time.monotonic()
                    docker("save", "-o", str(work / f"s{run}.tar"), "big:bench")
                    return time.monotonic() - started

                exporters["docker save"] = export_docker
                measure()

        gib = work / "gib"
        gib.mkdir()
        (gib / "Dockerfile").write_text(GIB)
        rss = peak_rss_mib([DISTILL, "build", "--progress", "quiet", "--no-cache", "--output",
                            f"type=oci,dest={work / 'gib.tar'}", str(gib)], env)
        size = (work / "gib.tar").stat().st_size

    base = statistics.median(times["distill"])
    print(f"\nexport of an image of ~830 MB to an OCI archive (median of {args.runs})")
    for name, values in times.items():
        med = statistics.median(values)
        ratio = "" if name == "distill" else f"   {med / base:.2f}x distill's time"
        print(f"  {name:12} {med:7.2f}s{ratio}")
    print(f"\npeak RSS building and exporting a 1 GiB layer ({size / 2**30:.2f} GiB "
          f"archive): {rss:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
