"""The examples (examples/go-hello, examples/python-app) build with their FROM lines
pointing at the test registry, unchanged otherwise.

The bases the examples use (debian:bookworm, distroless/static:nonroot,
distroless/python3:nonroot) go from the session store into registry_http as they are
(skopeo, so their manifest digests stay the store's: ``distill push NAME`` sends an image
to the registry its own name names, and cannot push it under another name). Each example
is copied, only its base names are rewritten to ``HOST/...``, and it is built in a fresh,
empty store ("machine A") with ``--push`` and ``--cache-to type=registry``: the bases can
only come from the registry. The pushed images are read back with skopeo (and umoci) and
run as the example tests run them (chrooted into the unpacked image as uid 65532, answering
HTTP); then another empty store ("machine B") builds python-app again with
``--cache-from`` and makes the same image without running a step.

Runtime: the Go example's build stage (apt-get install golang-go, go build) takes about
three minutes on an empty store, the Python one's about one and a half; the two machine-A
builds run at the same time, so the module costs about four and a half minutes beyond the
session's bases (``distill base debian`` and the two distroless bases, three more minutes
when no other test module has made them).
"""

from __future__ import annotations

import difflib
import filecmp
import os
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from distill.formats.stored import load
from distill.store.store import Store
from tests.conftest import REPO, RunDistill
from tests.helpers.examples import free_port
from tests.helpers.progress import parse_plain
from tests.helpers.readback import umoci_unpack
from tests.helpers.registry import RegistryServer, unique_repo
from tests.helpers.unpacked import entries, is_elf, resolve_in

pytestmark = pytest.mark.integration

#: The example, the bases its Dockerfile names, and the lines that name them.
EXAMPLES: Mapping[str, tuple[str, ...]] = {
    "go-hello": ("debian:bookworm", "distroless/static:nonroot"),
    "python-app": ("debian:bookworm", "distroless/python3:nonroot"),
}
#: The lines of each example's Dockerfile that name a base, with the base they name.
BASE_LINES: Mapping[str, tuple[tuple[str, str], ...]] = {
    "go-hello": (("ARG BASE=debian:bookworm", "debian:bookworm"),
                 ("FROM distroless/static:nonroot", "distroless/static:nonroot")),
    "python-app": (("ARG BASE=debian:bookworm", "debian:bookworm"),
                   ("FROM distroless/python3:nonroot", "distroless/python3:nonroot")),
}
GO_ANSWER = "hello from distill (uid 65532)\n"
PYTHON_ANSWER = "hello from distill python (uid 65532)\n"
SHELLS = ("bin/sh", "bin/bash", "bin/dash", "usr/bin/sh", "usr/bin/bash", "usr/bin/dash",
          "bin/busybox", "usr/bin/busybox")

# FROM [--flag=...]... IMAGE [AS NAME]  /  ARG NAME=DEFAULT: group 2 is the image name.
_FROM = re.compile(r"^(FROM\s+(?:--\S+\s+)*)(\S+)", re.IGNORECASE)
_ARG = re.compile(r"^(ARG\s+[A-Za-z_][A-Za-z0-9_]*=)(\S+)\s*$", re.IGNORECASE)


def point_bases_at(dockerfile: str, bases: Mapping[str, str]) -> str:
    """``dockerfile`` with every FROM image and ARG default that is one of ``bases``'
    names replaced by its value; nothing else changes."""
    out = []
    for line in dockerfile.splitlines(keepends=True):
        for pattern in (_FROM, _ARG):
            m = pattern.match(line)
            if m and m.group(2) in bases:
                line = line[:m.start(2)] + bases[m.group(2)] + line[m.end(2):]
                break
        out.append(line)
    return "".join(out)


def changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    """The diff of two texts as (removed, added) line pairs; fails on a line only one of
    them has."""
    diff = [d for d in difflib.ndiff(before.splitlines(), after.splitlines())
            if d[:2] in ("- ", "+ ")]
    removed = [d[2:] for d in diff if d.startswith("- ")]
    added = [d[2:] for d in diff if d.startswith("+ ")]
    assert len(removed) == len(added), diff
    return list(zip(removed, added, strict=True))


def serve_and_get(rootfs: Path, argv: list[str], port: int) -> str:
    """Run the image's entrypoint chrooted into its unpacked root filesystem as uid/gid
    65532 (the image's USER), on the host's network, and GET / once it listens."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "ADDR": f"127.0.0.1:{port}",
           "PYTHONUNBUFFERED": "1"}
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"    # before PATH is the image's
    proc = subprocess.Popen([chroot, "--userspec=65532:65532", str(rootfs), *argv],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60     # a guard against a hang, not an assertion
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    return str(r.read().decode())
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    out = proc.communicate()[0].decode(errors="replace")
                    raise AssertionError(f"{argv} gave no answer:\n{out}") from None
                time.sleep(0.2)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(frozen=True)
class Built:
    """One example built on machine A."""
    name: str
    context: Path
    root: Path          # machine A's store
    ref: str            # HOST/PREFIX/NAME:1, pushed
    cache: str          # HOST/PREFIX/NAME:buildcache, the registry cache (mode=max)
    digest: str         # the manifest digest distill printed
    log: str            # machine A's stderr


@pytest.fixture(scope="module")
def prefix(registry_http: RegistryServer) -> str:
    """HOST/REPO: the repositories of this module in the shared session registry."""
    return registry_http.ref(unique_repo("examples"))


@pytest.fixture(scope="module")
def bases(registry_http: RegistryServer, store_root: Path, prefix: str, debian_image: str,
          distroless_static: str, distroless_python3: str) -> dict[str, str]:
    """The examples' bases pushed from the session store: name -> HOST/PREFIX/name."""
    repo = prefix.split("/", 1)[1]
    return {name: registry_http.push_layout(store_root, name, f"{repo}/{name}")
            for name in (debian_image, distroless_static, distroless_python3)}


@pytest.fixture(scope="module")
def contexts(tmp_path_factory: pytest.TempPathFactory,
             bases: dict[str, str]) -> Iterator[dict[str, Path]]:
    """Each example copied, its Dockerfile's base names pointed at the registry. For
    python-app, the TLS-intercepting proxy's CA (SSL_CERT_FILE) as extra-ca.crt, as
    test_python_example does."""
    top = tmp_path_factory.mktemp("examples")
    out = {}
    for name in EXAMPLES:
        ctx = top / name
        shutil.copytree(REPO / "examples" / name, ctx,
                        ignore=shutil.ignore_patterns("extra-ca.crt", "__pycache__"))
        dockerfile = ctx / "Dockerfile"
        dockerfile.write_text(point_bases_at(dockerfile.read_text(), bases))
        out[name] = ctx
    ca = os.environ.get("SSL_CERT_FILE")
    if ca and Path(ca).is_file():
        shutil.copyfile(ca, out["python-app"] / "extra-ca.crt")
    yield out
    shutil.rmtree(top, ignore_errors=True)


@pytest.fixture(scope="module")
def built(distill: RunDistill, contexts: dict[str, Path], prefix: str,
          tmp_path_factory: pytest.TempPathFactory) -> dict[str, Built]:
    """Both examples built at once, each in an empty store of its own, pushed, and their
    build cache exported to the registry."""
    def build(name: str) -> Built:
        root = tmp_path_factory.mktemp(f"machine-a-{name}")
        assert not any(root.iterdir())
        ref, cache = f"{prefix}/{name}:1", f"{prefix}/{name}:buildcache"
        proc = distill("build", "--progress", "plain", "-t", ref, "--push",
                       "--cache-to", f"type=registry,ref={cache},mode=max",
                       str(contexts[name]), root=root)
        digest = proc.stdout.strip().splitlines()[-1]
        return Built(name, contexts[name], root, ref, cache, digest, proc.stderr)

    with ThreadPoolExecutor(len(EXAMPLES)) as pool:
        futures = {name: pool.submit(build, name) for name in EXAMPLES}
        return {name: future.result() for name, future in futures.items()}


def read_back(registry: RegistryServer, ref: str, tmp_path: Path) -> Path:
    """The pushed image copied out of the registry by skopeo, unpacked by umoci."""
    repo_tag = ref.split("/", 1)[1]
    layout = registry.pull_to_layout(repo_tag, tmp_path / "readback", "img")
    return umoci_unpack(layout, "img", tmp_path / "bundle")


# --- the examples as written, with only their bases moved --------------------------------


@pytest.mark.parametrize("name", EXAMPLES)
def test_only_the_base_names_changed(name: str, contexts: dict[str, Path],
                                     bases: dict[str, str]) -> None:
    original, ctx = REPO / "examples" / name, contexts[name]
    before, after = (original / "Dockerfile").read_text(), (ctx / "Dockerfile").read_text()
    expected = [(line, line.replace(base, bases[base])) for line, base in BASE_LINES[name]]
    assert changed_lines(before, after) == expected
    assert all(bases[b].startswith("127.0.0.1:") for b in EXAMPLES[name])
    # every other file of the example is there, byte for byte
    compare = filecmp.dircmp(original, ctx, ignore=["extra-ca.crt", "__pycache__"])
    assert compare.left_only == [] and compare.right_only == []
    _, mismatch, errors = filecmp.cmpfiles(original, ctx, [
        str(p.relative_to(original)) for p in original.rglob("*")
        if p.is_file() and p.name != "Dockerfile" and "__pycache__" not in p.parts],
        shallow=False)
    assert mismatch == [] and errors == []


@pytest.mark.parametrize("name", EXAMPLES)
def test_the_bases_came_from_the_registry(name: str, built: dict[str, Built],
                                          bases: dict[str, str], store_root: Path) -> None:
    result = built[name]
    machine_a, session = Store(result.root), Store(store_root)
    for base in EXAMPLES[name]:
        assert f"# pulling {bases[base]} " in result.log
        pulled = machine_a.lookup(bases[base])
        assert pulled is not None, f"{bases[base]} is not in machine A's store"
        assert pulled.digest == session.resolve(base).digest   # the image, as it was
        assert machine_a.lookup(base) is None                  # only the registry's name
    image = load(machine_a, machine_a.resolve(result.ref).digest)
    final_base = load(machine_a, machine_a.resolve(bases[EXAMPLES[name][-1]]).digest)
    assert image.layers[:len(final_base.layers)] == final_base.layers


# --- the pushed images, read back --------------------------------------------------------


def test_go_hello_is_pushed_and_answers(built: dict[str, Built], registry_http: RegistryServer,
                                        tmp_path: Path) -> None:
    result = built["go-hello"]
    repo_tag = result.ref.split("/", 1)[1]
    assert f"pushed {result.ref}@{result.digest}" in result.log
    info = registry_http.inspect(repo_tag)
    assert info["Digest"] == result.digest
    assert len(info["Layers"]) == 2               # distroless/static + the binary
    config = registry_http.inspect(repo_tag, "--config")["config"]
    assert config["User"] == "65532" and config["Entrypoint"] == ["/hello"]
    image = load(Store(result.root), Store(result.root).resolve(result.ref).digest)
    assert image.uncompressed_size() < 10_000_000
    rootfs = read_back(registry_http, result.ref, tmp_path)
    assert is_elf(rootfs / "hello")
    assert serve_and_get(rootfs, ["/hello"], free_port()) == GO_ANSWER


def test_python_app_is_pushed_and_answers(built: dict[str, Built],
                                          registry_http: RegistryServer,
                                          tmp_path: Path) -> None:
    result = built["python-app"]
    repo_tag = result.ref.split("/", 1)[1]
    assert f"pushed {result.ref}@{result.digest}" in result.log
    info = registry_http.inspect(repo_tag)
    assert info["Digest"] == result.digest
    assert len(info["Layers"]) == 3               # distroless/python3 + the venv + app.py
    config = registry_http.inspect(repo_tag, "--config")["config"]
    entrypoint = ["/venv/bin/python3", "/app/app.py"]
    assert config["User"] == "65532" and config["Entrypoint"] == entrypoint
    rootfs = read_back(registry_http, result.ref, tmp_path)
    tree = entries(rootfs)
    assert not [p for p in SHELLS if p in tree]
    python = resolve_in(rootfs, "venv/bin/python3")
    assert python is not None and is_elf(python), "/venv/bin/python3 leads nowhere"
    assert (rootfs / "app/app.py").read_bytes() == (result.context / "app.py").read_bytes()
    assert list(rootfs.glob("venv/lib/python3*/site-packages/bottle.py"))
    assert serve_and_get(rootfs, entrypoint, free_port()) == PYTHON_ANSWER


# --- machine B: the registry as the shared cache -----------------------------------------


def test_machine_b_builds_from_the_registry_cache(built: dict[str, Built], distill: RunDistill,
                                                  tmp_path: Path) -> None:
    """What docs/scale-out.md tells CI to do: an empty store with --cache-from runs no
    step (no apt-get, no pip) and makes machine A's image. (python-app only: go-hello's
    cache works the same way, and fetching its 290 MB build stage back took 45 s more.)"""
    result = built["python-app"]
    assert "exported " in result.log and f"to {result.cache}" in result.log
    proc = distill("build", "--progress", "plain",
                   "--cache-from", f"type=registry,ref={result.cache}",
                   str(result.context), root=tmp_path / "machine-b")
    steps = [s for s in parse_plain(proc.stderr)
             if s.instruction.startswith(("RUN ", "COPY ", "WORKDIR "))]
    assert steps and all(s.outcome == "CACHED" for s in steps), proc.stderr
    assert "Setting up " not in proc.stderr              # apt-get did not run
    assert proc.stdout.strip().splitlines()[-1] == result.digest
