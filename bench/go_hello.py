"""Cold build of examples/go-hello: distill vs buildah vs BuildKit, in one run.

Every builder starts from the same two bases, already loaded into each builder's own
store (not timed): Debian bookworm (mmdebstrap minbase) for the build stage and
distroless/static:nonroot (distill base) for the final one; with no build cache, each
builds the same Dockerfile to a tagged image. Times are wall-clock seconds; ratios are
other / distill (above 1 means distill is faster).

    .venv/bin/python bench/go_hello.py [--runs N] [--no-buildkit]
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

from tests.helpers.dockerd import DOCKER_CLI, private_dockerd  # noqa: E402

EXAMPLE = REPO / "examples" / "go-hello"
DISTILL = str(Path(sys.executable).with_name("distill"))
DISTROLESS = "distroless/static:nonroot"


def sh(argv: list[str], env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(argv, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(argv)} failed:\n{proc.stderr[-3000:]}")


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    started = time.monotonic()
    sh(argv, env)
    return time.monotonic() - started


class Distill:
    name = "distill"

    def __init__(self, work: Path) -> None:
        self.work = work
        self.layout_root = work / "distill-layout"
        sh([DISTILL, "base", "debian", "-t", "debian:bookworm"],
           {"DISTILL_ROOT": str(self.layout_root)})
        sh([DISTILL, "base", "static:nonroot", "-t", DISTROLESS],
           {"DISTILL_ROOT": str(self.layout_root)})

    def cold(self, run: int) -> float:
        root = self.work / f"distill-{run}"
        env = {"DISTILL_ROOT": str(root)}
        # A fresh store holding only the base, unpacked (as buildah's pull leaves it).
        sh(["cp", "-a", str(self.layout_root), str(root)])
        return timed([DISTILL, "build", "--progress", "quiet", "--no-cache", "-t", "go-hello:bench",
                      str(EXAMPLE)], env)

    def export(self, image: str, output: str) -> None:
        """Write ``image`` from the base store with ``--output OUTPUT`` (type=oci|docker)."""
        ctx = self.work / f"ctx-{image.replace('/', '-').replace(':', '-')}"
        ctx.mkdir(exist_ok=True)
        (ctx / "Dockerfile").write_text(f"FROM {image}\n")
        sh([DISTILL, "build", "--progress", "quiet", "-t", image, "--output", output,
            str(ctx)], {"DISTILL_ROOT": str(self.layout_root)})

    def base_layouts(self) -> dict[str, Path]:
        """Each base as an OCI layout directory (ref: its tag), for buildah to pull."""
        out = {}
        for image in ("debian:bookworm", DISTROLESS):
            dest = self.work / f"layout-{image.split(':')[1]}"
            self.export(image, f"type=oci,dest={dest},tar=false")
            out[image] = dest
        return out


class Buildah:
    name = "buildah"

    def __init__(self, work: Path, layouts: dict[str, Path]) -> None:
        self.work, self.layouts = work, layouts

    def _argv(self, home: Path, *args: str) -> list[str]:
        return buildah_argv(home, *args)

    def cold(self, run: int) -> float:
        home = self.work / f"buildah-{run}"
        for image, layout in self.layouts.items():
            image_id = subprocess.run(
                self._argv(home, "pull", "--quiet", f"oci:{layout}:{image.split(':')[1]}"),
                capture_output=True, text=True, check=True).stdout.split()[-1]
            sh(self._argv(home, "tag", image_id, f"localhost/{image}"))
        try:
            return timed(self._argv(home, "build", "--isolation=chroot", "--pull=never",
                                    "--layers", "--no-cache", "--build-arg",
                                    "BASE=localhost/debian:bookworm", "-t", "go-hello:bench",
                                    str(EXAMPLE)))
        finally:
            subprocess.run(self._argv(home, "rm", "--all"), capture_output=True)
            subprocess.run(self._argv(home, "rmi", "--all", "--force"), capture_output=True)


class BuildKit:
    name = "buildkit"

    def __init__(self, docker: object, archives: list[Path]) -> None:
        self.docker = docker
        for archive in archives:
            docker("load", "-i", str(archive))  # type: ignore[operator]

    def cold(self, run: int) -> float:
        self.docker("builder", "prune", "-af", check=False)  # type: ignore[operator]
        started = time.monotonic()
        proc = subprocess.run([DOCKER_CLI, "--host", self.docker.host, "build",  # type: ignore[attr-defined]
                               "--no-cache", "--network=host", "-t", "go-hello:bench", str(EXAMPLE)],
                              env={**os.environ, "DOCKER_BUILDKIT": "1"},
                              capture_output=True, text=True)
        elapsed = time.monotonic() - started
        if proc.returncode != 0:
            sys.exit(f"bench: BuildKit build failed:\n{proc.stderr[-3000:]}")
        return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--no-buildkit", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="distill-bench-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        distill = Distill(work)
        builders: list[object] = [distill, Buildah(work, distill.base_layouts())]
        times: dict[str, list[float]] = {}

        def measure() -> None:
            for run in range(args.runs):
                for b in builders:
                    t = b.cold(run)  # type: ignore[attr-defined]
                    times.setdefault(b.name, []).append(t)  # type: ignore[attr-defined]
                    print(f"run {run + 1}: {b.name:8} {t:6.1f}s", flush=True)  # type: ignore[attr-defined]

        if args.no_buildkit or shutil.which("dockerd") is None:
            measure()
        else:
            archives = []
            for image in ("debian:bookworm", DISTROLESS):
                archives.append(work / f"{image.split(':')[1]}.docker.tar")
                distill.export(image, f"type=docker,dest={archives[-1]}")
            with private_dockerd(work / "docker") as docker:
                builders.append(BuildKit(docker, archives))
                measure()
    base = statistics.median(times["distill"])
    print("\ncold build of examples/go-hello (median of "
          f"{args.runs} run{'s' if args.runs > 1 else ''})")
    for name, values in times.items():
        med = statistics.median(values)
        ratio = "" if name == "distill" else f"   {med / base:.2f}x distill's time"
        print(f"  {name:8} {med:6.1f}s{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
