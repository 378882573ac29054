"""examples/distroless: one program per language, each built multi-stage onto its
distroless preset (with only Debian's archive and PyPI/npm reachable), loaded into
Docker's engine and run there as the nonroot user, printing what it should."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from distill.formats.stored import load
from distill.oci.digest import Digest
from distill.store.store import Store
from tests.conftest import REPO, RunDistill
from tests.helpers.dockerd import Docker, private_dockerd
from tests.helpers.examples import example_context

pytestmark = pytest.mark.integration

EXAMPLES = REPO / "examples" / "distroless"
#: example -> (the bases it names, what it prints, its final preset)
CASES = {
    "go": (["debian", "static:nonroot"], r"hello from Go on static \(uid 65532\)",
           "static:nonroot"),
    "python-script": (["python3:debug", "python3:nonroot"],
                      r"hello from Python 3\.11 \(uid 65532\)", "python3:nonroot"),
    "python-venv": (["debian", "python3:nonroot"],
                    r"numpy 2\.2\.6: trace 15, determinant -2", "python3:nonroot"),
    "node": (["debian", "nodejs:nonroot"],
             r"hello from Node\.js 18 \(uid 65532\): a minute is 1m", "nodejs:nonroot"),
    "java": (["java17:debug", "java17:nonroot"], r"hello from Java 17: (\d+) trusted CAs",
             "java17:nonroot"),
    "cpp": (["debian", "cc:nonroot"], r"hello from C\+\+ on cc \(uid 65532\): 1\+\.\.\+10 = 55",
            "cc:nonroot"),
}


def test_every_example_is_tested() -> None:
    assert sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir()) == sorted(CASES)


@pytest.fixture(scope="module")
def docker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Docker]:
    with private_dockerd(tmp_path_factory.mktemp("docker")) as engine:
        yield engine


@pytest.fixture(scope="module")
def bases(distill: RunDistill) -> Iterator[set[str]]:
    """Makes each base an example names, once: `distill base` as the README says."""
    made: set[str] = set()
    yield made


def _base(distill: RunDistill, made: set[str], preset: str, debian_image: str) -> None:
    if preset in made:
        return
    if preset == "debian":
        assert debian_image == "debian:bookworm"     # the session fixture made it
    else:
        distill("base", preset, "-t", f"distroless/{preset}")
    made.add(preset)


@pytest.mark.parametrize("example", list(CASES))
def test_example_runs_under_docker(distill: RunDistill, docker: Docker, bases: set[str],
                                   debian_image: str, store_root: Path, tmp_path: Path,
                                   example: str) -> None:
    needs, prints, final = CASES[example]
    for preset in needs:
        _base(distill, bases, preset, debian_image)
    ctx = example_context(EXAMPLES / example, tmp_path / example)
    archive = tmp_path / f"{example}.tar"
    tag = f"distroless-example/{example}:test"
    built = distill("build", "--progress", "plain", "-t", tag,
                    "--output", f"type=docker,dest={archive}", str(ctx))
    # Built on the preset: its layer first, untouched, and its config's user.
    store = Store(store_root)
    image = load(store, Digest.from_hex(built.stdout.split()[-1].removeprefix("sha256:")))
    base = load(store, store.resolve(f"distroless/{final}").digest)
    assert image.layers[:len(base.layers)] == base.layers
    assert image.runtime.user == "65532"

    docker("load", "-i", str(archive))
    proc = docker("run", "--rm", "--network=none", tag, check=False)
    assert proc.returncode == 0, proc.stderr
    match = re.fullmatch(prints + "\n", proc.stdout)
    assert match, proc.stdout
    if example == "java":     # Java trusts the CA bundle, through the image's cacerts
        assert int(match.group(1)) > 100
