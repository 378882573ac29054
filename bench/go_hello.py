"""examples/go-hello: distill vs buildah vs BuildKit, in one run, three ways:

* cold: every builder starts from the same two bases, already loaded into its own store
  (not timed): Debian bookworm (mmdebstrap minbase) for the build stage and
  distroless/static:nonroot (distill base) for the final one; with no build cache, each
  builds the same Dockerfile to a tagged image;
* no-change: the same build again, with the cache the cold build left (the median of
  ``--rebuilds`` builds after one untimed warm-up build; BuildKit's daemon stays up);
* edit: a one-line change to main.go, built with that cache.

distill runs as installed (its modules byte-compiled, as pip leaves them). Times are
wall-clock seconds; ratios are other / distill (above 1 means distill is faster).

    .venv/bin/python bench/go_hello.py [--runs N] [--rebuilds N] [--no-buildkit]
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
#: distill as installed: byte-compiled modules are used (this machine's environment may
#: say not to write them, which would make every start compile distill anew)
INSTALLED = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
DISTROLESS = "distroless/static:nonroot"


def sh(argv: list[str], env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(argv, env={**INSTALLED, **(env or {})}, stdout=subprocess.DEVNULL,
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

    def cold(self, run: int, ctx: Path) -> float:
        self.root = self.work / f"distill-{run}"
        # A fresh store holding only the base, unpacked (as buildah's pull leaves it).
        sh(["cp", "-a", str(self.layout_root), str(self.root)])
        return timed([DISTILL, "build", "--progress", "quiet", "--no-cache", "-t",
                      "go-hello:bench", str(ctx)], {"DISTILL_ROOT": str(self.root)})

    def again(self, ctx: Path) -> float:
        return timed([DISTILL, "build", "--progress", "quiet", "-t", "go-hello:bench",
                      str(ctx)], {"DISTILL_ROOT": str(self.root)})

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

    def cold(self, run: int, ctx: Path) -> float:
        if getattr(self, "home", None) is not None:
            self._clean()
        home = self.home = self.work / f"buildah-{run}"
        for image, layout in self.layouts.items():
            image_id = subprocess.run(
                self._argv(home, "pull", "--quiet", f"oci:{layout}:{image.split(':')[1]}"),
                capture_output=True, text=True, check=True).stdout.split()[-1]
            sh(self._argv(home, "tag", image_id, f"localhost/{image}"))
        return timed(self._build(ctx, "--no-cache"))

    def _build(self, ctx: Path, *flags: str) -> list[str]:
        return self._argv(self.home, "build", "--isolation=chroot", "--pull=never", "--layers",
                          *flags, "--build-arg", "BASE=localhost/debian:bookworm", "-t",
                          "go-hello:bench", str(ctx))

    def again(self, ctx: Path) -> float:
        return timed(self._build(ctx))

    def _clean(self) -> None:
        subprocess.run(self._argv(self.home, "rm", "--all"), capture_output=True)
        subprocess.run(self._argv(self.home, "rmi", "--all", "--force"), capture_output=True)


class BuildKit:
    name = "buildkit"

    def __init__(self, docker: object, archives: list[Path]) -> None:
        self.docker = docker
        for archive in archives:
            docker("load", "-i", str(archive))  # type: ignore[operator]

    def cold(self, run: int, ctx: Path) -> float:
        self.docker("builder", "prune", "-af", check=False)  # type: ignore[operator]
        return self._build(ctx, "--no-cache")

    def again(self, ctx: Path) -> float:
        return self._build(ctx)

    def _build(self, ctx: Path, *flags: str) -> float:
        started = time.monotonic()
        proc = subprocess.run([DOCKER_CLI, "--host", self.docker.host, "build",  # type: ignore[attr-defined]
                               *flags, "--network=host", "-t", "go-hello:bench", str(ctx)],
                              env={**os.environ, "DOCKER_BUILDKIT": "1"},
                              capture_output=True, text=True)
        elapsed = time.monotonic() - started
        if proc.returncode != 0:
            sys.exit(f"bench: BuildKit build failed:\n{proc.stderr[-3000:]}")
        return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--rebuilds", type=int, default=5)
    ap.add_argument("--no-buildkit", action="store_true")
    args = ap.parse_args()
    # byte-compile distill as pip does on install (the editable install here has no .pyc)
    sh([sys.executable, "-m", "compileall", "-q", str(REPO / "src" / "distill")])
    with tempfile.TemporaryDirectory(prefix="distill-bench-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        ctx = work / "go-hello"
        distill = Distill(work)
        builders: list[object] = [distill, Buildah(work, distill.base_layouts())]
        times: dict[tuple[str, str], list[float]] = {}

        def note(phase: str, name: str, t: float) -> None:
            times.setdefault((phase, name), []).append(t)
            print(f"{phase:10} {name:8} {t:8.3f}s", flush=True)

        def measure() -> None:
            for run in range(args.runs):
                shutil.rmtree(ctx, ignore_errors=True)
                shutil.copytree(EXAMPLE, ctx)
                time.sleep(2.1)  # the context older than the clock's granularity, as a checkout
                # the order rotates from run to run: the first to fetch from the Debian
                # mirror is not always the same builder
                for b in builders[run % len(builders):] + builders[:run % len(builders)]:
                    note("cold", b.name, b.cold(run, ctx))  # type: ignore[attr-defined]
                for b in builders:
                    b.again(ctx)  # type: ignore[attr-defined]   # warm-up: untimed
                    for _ in range(args.rebuilds):
                        note("no-change", b.name, b.again(ctx))  # type: ignore[attr-defined]
                main_go = ctx / "main.go"
                main_go.write_text(main_go.read_text().replace("hello", "hello again", 1))
                for b in builders:
                    note("edit", b.name, b.again(ctx))  # type: ignore[attr-defined]

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
    print(f"\nexamples/go-hello, medians ({args.runs} cold run(s), "
          f"{args.rebuilds} no-change rebuilds per run)")
    for phase in ("cold", "no-change", "edit"):
        base = statistics.median(times[(phase, "distill")])
        for (p, name), values in times.items():
            if p != phase:
                continue
            med = statistics.median(values)
            ratio = "" if name == "distill" else f"   {med / base:.2f}x distill's time"
            print(f"  {phase:10} {name:8} {med:8.3f}s{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
