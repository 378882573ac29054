"""Push and pull of the single-stage go-hello image through a local registry: distill vs
``skopeo copy``, in one run.

The image is examples/go-hello/Dockerfile.single built by distill on its Debian base
(``distill base debian -t debian:bookworm``), made once and cached under
``.cache/bench-registry/`` (``--rebuild`` makes it again). The registry is Debian's
``docker-registry`` (distribution 2.8) serving plain HTTP on 127.0.0.1, anonymous, with
its storage on the same disk (tests/helpers/registry.py starts it).

* push: ``distill push HOST/bench/distill-N:latest`` against ``skopeo copy
  oci:STORE:NAME docker://HOST/bench/skopeo-N:latest``, both from the same store (a
  hard-linked copy of the cached image, so skopeo reads the very files distill reads).
  Every push goes to a registry started for it alone (fresh storage, untimed start), so
  no blob is found already there or cross-mounted: every byte is uploaded.
* pull: ``distill pull HOST/bench/source:latest`` into an empty ``DISTILL_ROOT`` against
  ``skopeo copy docker://HOST/bench/source:latest oci:DIR:latest`` into an empty layout,
  from one registry that distill pushed the image to (untimed).

Each operation runs ``--runs`` times per tool, the order rotating from one round to the
next; outputs are removed and ``sync`` runs between operations (untimed), so each starts
with no dirty pages of the one before. ``--baseline-distill`` times a second distill (a
worktree of an earlier commit, say) in the same rounds. Reported: median wall seconds,
MB/s (10^6 bytes of blobs moved, i.e. the compressed layers and the config, per second),
the median CPU seconds (user + system) of the tool's own process (the registry's is not
counted for any), and the ratios to skopeo (below 1: faster than skopeo).

    .venv/bin/python bench/registry.py [--runs N] [--distill PATH]
        [--baseline-distill PATH] [--only push|pull] [--rebuild]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from distill.oci.descriptor import Descriptor
from distill.oci.digest import Digest
from distill.oci.reference import normalize_reference
from distill.store.store import Store
from tests.helpers.registry import RegistryServer, start_http_registry

EXAMPLE = REPO / "examples" / "go-hello"
CACHE = REPO / ".cache" / "bench-registry"
IMAGE = "go-hello-single:bench"
NAME = str(normalize_reference(IMAGE).with_default_tag())   # as the store names it
CURRENT = str(Path(sys.executable).with_name("distill"))


def sh(argv: list[str], env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(argv, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(argv)} failed:\n{proc.stderr[-3000:]}")


@dataclass(frozen=True)
class Sample:
    wall: float    # seconds, wall clock
    cpu: float     # seconds of user + system CPU of the tool's process (and its children)


def timed(argv: list[str], env: dict[str, str] | None = None) -> Sample:
    started = time.monotonic()
    proc = subprocess.Popen(argv, env={**os.environ, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(argv)} failed:\n{err.decode(errors='replace')[-3000:]}")
    return Sample(wall, usage.ru_utime + usage.ru_stime)


def settle(*paths: Path) -> None:
    """Remove earlier outputs and write back dirty pages, so the next timing starts even."""
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)
    os.sync()


# -- the image ---------------------------------------------------------------------------

def image_store(distill: str, rebuild: bool) -> Path:
    """A store holding only the built image (its blobs and layer facts), tagged IMAGE."""
    image_root = CACHE / "image"
    if not rebuild and (image_root / "index.json").exists() \
            and Store(image_root).names.resolve(NAME) is not None:
        return image_root
    build_root = CACHE / "build"
    env = {"DISTILL_ROOT": str(build_root)}
    build = Store(build_root)
    if rebuild or build.names.resolve("docker.io/library/debian:bookworm") is None:
        print("bench: making the Debian base (distill base debian)", flush=True)
        sh([distill, "base", "debian", "-t", "debian:bookworm"], env)
    print("bench: building examples/go-hello/Dockerfile.single", flush=True)
    sh([distill, "build", "--progress", "quiet", "-f", str(EXAMPLE / "Dockerfile.single"),
        "-t", IMAGE, str(EXAMPLE)], env)
    shutil.rmtree(image_root, ignore_errors=True)
    _copy_image(build, Store(image_root), NAME)
    return image_root


@dataclass(frozen=True)
class StoredImage:
    manifest: Descriptor
    config: Digest
    layers: list[Digest]
    blob_bytes: int              # config and layers, as they travel (compressed)

    @classmethod
    def of(cls, store: Store, name: str) -> StoredImage:
        desc = store.names.resolve(name)
        assert desc is not None, f"{name} is not in {store.root}"
        doc = json.loads(store.blobs.read(desc.digest))
        return cls(desc, Digest(doc["config"]["digest"]),
                   [Digest(x["digest"]) for x in doc["layers"]],
                   sum(int(b["size"]) for b in [doc["config"], *doc["layers"]]))


def _copy_image(src: Store, dest: Store, name: str) -> None:
    """Hard-link ``name``'s blobs (and the layer facts distill computed) into ``dest``."""
    image = StoredImage.of(src, name)
    for digest in (image.manifest.digest, image.config, *image.layers):
        target = dest.blobs.path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            os.link(src.blobs.path(digest), target)
    for digest in image.layers:
        facts = src.layer_facts(digest)
        if facts is not None:
            dest.record_layer(digest, facts)
    dest.names.tag(name, image.manifest)


# -- the registry ------------------------------------------------------------------------

class Registry:
    """A fresh anonymous plain-HTTP registry, and the registries.toml saying so."""

    def __init__(self, directory: Path) -> None:
        self.server: RegistryServer = start_http_registry(directory)
        self.host = self.server.host
        self.config = directory / "registries.toml"
        self.config.write_text(f'[registry."{self.host}"]\nhttp = true\n')

    def stop(self) -> None:
        self.server.stop()
        shutil.rmtree(self.server.storage, ignore_errors=True)


# -- the tools ---------------------------------------------------------------------------

SKOPEO = "skopeo"


class Bench:
    def __init__(self, work: Path, distills: dict[str, str], source: Path) -> None:
        self.work = work
        self.distills = distills       # tool name -> distill executable
        # the push store: the cached image hard-linked into a store of this run, so the
        # names and blob sources pushes record stay out of the cache
        self.push_root = work / "push-store"
        self.push_store = Store(self.push_root)
        _copy_image(Store(source), self.push_store, NAME)
        self.image = StoredImage.of(self.push_store, NAME)
        self.manifest = self.image.manifest.digest
        facts = [self.push_store.layer_facts(d) for d in self.image.layers]
        self.unpacked = sum(f.uncompressed_size for f in facts if f is not None)
        self.pushes = 0

    def tag(self, target: str) -> None:
        """Name the image ``target`` in the push store, as ``distill push`` wants it."""
        self.push_store.names.tag(target, self.image.manifest)

    # push: each into a registry of its own
    def push(self, tool: str) -> Sample:
        self.pushes += 1
        registry = Registry(self.work / f"push-registry-{self.pushes}")
        try:
            target = f"{registry.host}/bench/{tool}-{self.pushes}:latest"
            if tool == SKOPEO:
                sample = timed(["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                                f"oci:{self.push_root}:{NAME}", f"docker://{target}"])
            else:
                self.tag(target)
                env = {"DISTILL_ROOT": str(self.push_root),
                       "DISTILL_REGISTRIES": str(registry.config)}
                sample = timed([self.distills[tool], "push", "-q", target], env)
            self._check(target)
            return sample
        finally:
            registry.stop()
            settle()

    def _check(self, target: str) -> None:
        """The registry holds the image, under the manifest digest the store has."""
        raw = subprocess.run(
            ["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{target}"],
            capture_output=True, check=True).stdout
        got = Digest.of_bytes(raw)
        if got != self.manifest:
            sys.exit(f"bench: {target} holds manifest {got}, not {self.manifest}")

    # pull: all from one registry, each into an empty store
    def pull(self, tool: str, registry: Registry, run: int) -> Sample:
        source = f"{registry.host}/bench/source:latest"
        dest = self.work / f"pull-{tool}-{run}"
        try:
            if tool == SKOPEO:
                return timed(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                              f"docker://{source}", f"oci:{dest}:latest"])
            env = {"DISTILL_ROOT": str(dest), "DISTILL_REGISTRIES": str(registry.config)}
            sample = timed([self.distills[tool], "pull", "-q", source], env)
            pulled = Store(dest).names.resolve(source)
            if pulled is None or pulled.digest != self.manifest:
                sys.exit(f"bench: {tool} pulled {pulled}, not {self.manifest}")
            return sample
        finally:
            settle(dest)


def measure(what: str, tools: list[str], runs: int, once: Callable[[str, int], Sample]
            ) -> dict[str, list[Sample]]:
    """``runs`` rounds of every tool, the order rotating from one round to the next."""
    times: dict[str, list[Sample]] = {tool: [] for tool in tools}
    for run in range(runs):
        shift = run % len(tools)
        for tool in tools[shift:] + tools[:shift]:
            sample = once(tool, run)
            times[tool].append(sample)
            print(f"run {run + 1}: {what} {tool:8} {sample.wall:6.2f}s (CPU {sample.cpu:.2f}s)",
                  flush=True)
    return times


def report(title: str, times: dict[str, list[Sample]], nbytes: int) -> None:
    wall = {tool: statistics.median(s.wall for s in samples) for tool, samples in times.items()}
    cpu = {tool: statistics.median(s.cpu for s in samples) for tool, samples in times.items()}
    print(f"\n{title}")
    print(f"  {'':8} {'wall':>8} {'MB/s':>6} {'CPU':>7}   {'wall/skopeo':>11} {'CPU/skopeo':>10}"
          "   runs (wall s)")
    for tool, samples in times.items():
        runs = " / ".join(f"{s.wall:.2f}" for s in samples)
        print(f"  {tool:8} {wall[tool]:6.2f} s {nbytes / 1e6 / wall[tool]:6.1f} "
              f"{cpu[tool]:5.2f} s   {wall[tool] / wall[SKOPEO]:11.2f} "
              f"{cpu[tool] / cpu[SKOPEO]:10.2f}   {runs}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--distill", default=CURRENT, help="the distill to time (default: this "
                    "checkout's venv)")
    ap.add_argument("--baseline-distill", metavar="PATH", help="another distill to time in "
                    "the same run (e.g. a worktree of an earlier commit)")
    ap.add_argument("--rebuild", action="store_true", help="make the cached image again")
    ap.add_argument("--only", choices=("push", "pull"), help="time one direction only")
    args = ap.parse_args()
    distills = {"distill": args.distill}
    if args.baseline_distill:
        distills["baseline"] = args.baseline_distill
    tools = [*distills, SKOPEO]
    source = image_store(args.distill, args.rebuild)
    pushes: dict[str, list[Sample]] = {}
    pulls: dict[str, list[Sample]] = {}
    with tempfile.TemporaryDirectory(prefix="distill-bench-", dir="/var/tmp") as tmp:
        bench = Bench(Path(tmp), distills, source)
        print(f"image: {NAME} ({bench.manifest}), {len(bench.image.layers)} layers, "
              f"{bench.image.blob_bytes / 1e6:.1f} MB of blobs "
              f"({bench.unpacked / 1e6:.1f} MB unpacked)", flush=True)
        if args.only != "pull":
            pushes = measure("push", tools, args.runs, lambda tool, run: bench.push(tool))
        if args.only != "push":
            registry = Registry(Path(tmp) / "pull-registry")
            try:
                target = f"{registry.host}/bench/source:latest"
                bench.tag(target)
                sh([args.distill, "push", "-q", target],
                   {"DISTILL_ROOT": str(bench.push_root),
                    "DISTILL_REGISTRIES": str(registry.config)})
                settle()
                pulls = measure("pull", tools, args.runs,
                                lambda tool, run: bench.pull(tool, registry, run))
            finally:
                registry.stop()
    runs = f"median of {args.runs} run{'s' if args.runs > 1 else ''}"
    if pushes:
        report(f"push into an empty registry ({runs})", pushes, bench.image.blob_bytes)
    if pulls:
        report(f"pull into an empty store ({runs})", pulls, bench.image.blob_bytes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
