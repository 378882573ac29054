"""`make demo`: build examples/go-hello multi-stage and single-stage and compare.

Steps: make a Debian bookworm base (mmdebstrap, cached), import it into the
store, build both Dockerfiles with the distill CLI, and print a size table.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from distill.formats.stored import load
from distill.report.sizes import human
from distill.store.store import Store

ROOT = Path(__file__).resolve().parents[1]
DISTILL = [str(Path(sys.executable).with_name("distill"))]


def bases(console: Console) -> None:
    """The build stage's Debian and the final stage's distroless base, made once."""
    store = Store()
    for preset, name, what in (("debian", "debian:bookworm", "mmdebstrap, ~30 s"),
                               ("static:nonroot", "distroless/static:nonroot",
                                "verified .debs, a few seconds")):
        if store.names.resolve(name) is None:
            console.print(f"making {name}: distill base {preset} ({what})...")
            subprocess.run([*DISTILL, "base", preset, "-t", name], check=True)


def build(name: str, dockerfile: str) -> tuple[str, float]:
    started = time.monotonic()
    proc = subprocess.run([*DISTILL, "build", "--progress", "plain", "-f",
                           str(ROOT / "examples/go-hello" / dockerfile), "-t", name,
                           str(ROOT / "examples/go-hello")], stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        sys.exit(f"demo: building {name} failed")
    return proc.stdout.strip().splitlines()[-1], time.monotonic() - started


def main() -> int:
    console = Console(width=110)
    bases(console)
    results = [("go-hello:multi-stage", *build("go-hello:multi-stage", "Dockerfile")),
               ("go-hello:single-stage", *build("go-hello:single-stage", "Dockerfile.single"))]
    store = Store()
    table = Table(title="examples/go-hello, built with distill")
    for col in ("image", "compressed", "uncompressed", "layers", "user", "build time"):
        table.add_column(col, justify="left" if col in ("image", "user") else "right")
    images = []
    for name, digest, seconds in results:
        image = load(store, store.resolve(name).digest)
        images.append(image)
        table.add_row(name, human(image.compressed_size()), human(image.uncompressed_size()),
                      str(len(image.layers)), image.runtime.user or "root", f"{seconds:.1f}s")
    console.print(table)
    multi, single = images
    ratio = single.uncompressed_size() / max(multi.uncompressed_size(), 1)
    console.print(f"the multi-stage image is [bold]{ratio:.0f}× smaller[/bold] "
                  f"({human(multi.uncompressed_size())} vs {human(single.uncompressed_size())})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
