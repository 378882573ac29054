"""Issue 14: distill as an ordinary user in an unprivileged container, as kaniko ran.

The container is Docker's engine's, started as a Kubernetes pod runs by default: ``--user
1000``, no added capability, not privileged, seccomp and AppArmor unconfined, the store on
a volume, and /dev/net/tun given (a device, not a capability: RUN's private network).
Its image is examples/rootless/Dockerfile, built by distill (as root); distill itself is
the copy and venv tests/rootless/run prepares, mounted read-only.

In there, distill builds examples/go-hello; the image it makes is the image distill
makes as root (same bases, SOURCE_DATE_EPOCH), and it runs under Docker. A RUN there
cannot reach distill's processes, their files or the container user's secrets, though it
shares the container's /proc (the container masks /proc, so no RUN may mount its own).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, RunDistill
from tests.helpers.dockerd import Docker, private_dockerd
from tests.helpers.isolation import compile_probe
from tests.integration.test_go_example import EXAMPLE, ask_go_hello

pytestmark = pytest.mark.integration

ROOTLESS_TOP = Path("/opt/distill-rootless")   # where tests/rootless/run puts distill
DISTILL_IN = f"{ROOTLESS_TOP}/venv/bin/distill"
IMAGE = "distill-rootless-builder:test"
SDE = "1700000000"
SHARED_PROC = "RUN shares this container's /proc and processes"
SECRET = "container-user-secret-7f3a9c"


@pytest.fixture(scope="module")
def bases(distill: RunDistill, debian_image: str, distroless_static: str,
          tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The go-hello bases, exported as OCI archives a container can load (mode a+r)."""
    out = tmp_path_factory.mktemp("rootless-bases")
    os.chmod(out, 0o755)
    for i, name in enumerate((debian_image, distroless_static)):
        ctx = out / f"ctx-{i}"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(f"FROM {name}\n")
        distill("build", "--progress", "quiet", "-t", name, "--output",
                f"type=oci,dest={out / f'base-{i}.tar'}", str(ctx))
        os.chmod(out / f"base-{i}.tar", 0o644)
    return out


@pytest.fixture(scope="module")
def engine(distill: RunDistill, debian_image: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Docker]:
    """A private Docker engine holding the builder image; distill's rootless copy made."""
    subprocess.run([str(REPO / "tests/rootless/run"), "--prepare"], check=True,
                   capture_output=True)
    work = tmp_path_factory.mktemp("rootless-engine")
    archive = work / "builder.tar"
    distill("build", "--progress", "quiet", "--build-arg", f"BASE={debian_image}",
            "-t", IMAGE, "--output", f"type=docker,dest={archive}",
            str(REPO / "examples/rootless"))
    with private_dockerd(work / "docker") as docker:
        docker("load", "-i", str(archive))
        yield docker


def _unprivileged(docker: Docker, volume: str, *mounts: str, env: tuple[str, ...] = (),
                  command: str, workdir: str = "/home/builder") -> subprocess.CompletedProcess[str]:
    """``command`` (sh -c) as uid 1000 in the builder image: no capability added."""
    argv = ["run", "--rm", "--user", "1000:1000", "--network=host", "-w", workdir,
            "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
            "--device", "/dev/net/tun",
            "-v", f"{volume}:/home/builder/.local/share/distill",
            "-v", f"{ROOTLESS_TOP}:{ROOTLESS_TOP}:ro"]
    for mount in mounts:
        argv += ["-v", mount]
    for item in env:
        argv += ["-e", item]
    return docker(*argv, IMAGE, "sh", "-c", command, check=False, timeout=1800)


def test_the_container_is_unprivileged(engine: Docker) -> None:
    """The control: uid 1000 with no capability at all, and a /proc no user namespace of
    the container may mount anew (which is why a RUN shares it)."""
    proc = _unprivileged(engine, "rootless-probe", command=(
        "id -u; grep -E '^Cap(Eff|Prm)' /proc/self/status; "
        "unshare --map-root-user --pid --fork --mount-proc true 2>&1 || echo no-own-proc"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split("\n")
    assert lines[0] == "1000"
    assert "CapEff:\t0000000000000000" in proc.stdout
    assert "CapPrm:\t0000000000000000" in proc.stdout
    assert "no-own-proc" in proc.stdout, proc.stdout


def test_go_hello_builds_in_an_unprivileged_container(
        engine: Docker, bases: Path, distill: RunDistill, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir(mode=0o777)
    os.chmod(out, 0o777)
    proc = _unprivileged(
        engine, "rootless-store", f"{EXAMPLE}:/ctx:ro", f"{bases}:/bases:ro", f"{out}:/out",
        env=(f"SOURCE_DATE_EPOCH={SDE}",),
        command=(f"D={DISTILL_IN}; $D load -q -i /bases/base-0.tar && "
                 "$D load -q -i /bases/base-1.tar && "
                 "$D build --progress plain -t go-hello:rootless "
                 "--output type=docker,dest=/out/go-hello.tar /ctx"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr.count(SHARED_PROC) == 1, proc.stderr      # said once
    assert "apt-get install" in proc.stderr and "go build" in proc.stderr
    digest = proc.stdout.strip().splitlines()[-1]
    # the image distill makes as root from the same bases: the same bytes, owners included
    as_root = distill("build", "--progress", "quiet", "-t", "go-hello:root-sde", str(EXAMPLE),
                      env={"SOURCE_DATE_EPOCH": SDE}).stdout.strip().splitlines()[-1]
    assert digest == as_root
    # and it runs under Docker
    assert "go-hello:rootless" in engine("load", "-i", str(out / "go-hello.tar")).stdout
    assert "uid 65532" in ask_go_hello(engine, "go-hello:rootless")


PROBE = r"""FROM debian:bookworm
RUN own=$(readlink /proc/self/ns/pid); for p in /proc/[0-9]*; do \
      [ "$(readlink $p/ns/pid 2>/dev/null)" = "$own" ] && continue; \
      echo "sees $(cat $p/comm 2>/dev/null)"; \
      cat $p/environ > /dev/null 2>&1 && echo "environ of $(cat $p/comm) read"; \
      cat $p/root/home/builder/secret.txt 2>/dev/null; \
      ls $p/cwd/ > /dev/null 2>&1 && echo "cwd of $(cat $p/comm) listed"; \
    done; \
    cat /home/builder/secret.txt 2>&1 | head -1; \
    unshare --map-root-user --mount true 2>&1 | head -1; \
    grep -E '^CapEff' /proc/self/status; \
    echo probes-done
"""


def test_a_run_in_the_container_reaches_no_process_and_no_file_of_the_builder(
        engine: Docker, bases: Path, tmp_path: Path) -> None:
    """With the container's /proc shared, a RUN sees its processes listed, and nothing
    more: not their environment (where secrets pass), their root or working directory,
    nor the builder's home; it may not make a namespace (seccomp), and has Docker's
    default capabilities only."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(PROBE)
    os.chmod(ctx, 0o755)
    os.chmod(ctx / "Dockerfile", 0o644)
    proc = _unprivileged(
        engine, "rootless-probe-store", f"{ctx}:/ctx:ro", f"{bases}:/bases:ro",
        command=(f"echo {SECRET} > /home/builder/secret.txt; chmod 600 /home/builder/secret.txt;"
                 f" export TOKEN={SECRET}; D={DISTILL_IN}; $D load -q -i /bases/base-0.tar && "
                 "$D build --progress plain --no-cache /ctx"))
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "probes-done" in output
    assert SECRET not in output.replace(f"echo {SECRET}", ""), output
    assert "environ of" not in output and "cwd of" not in output, output
    assert "sees distill" in output or "sees python3" in output, output  # they are listed
    assert "/home/builder/secret.txt: No such file or directory" in output
    assert "unshare: unshare failed: Operation not permitted" in output
    assert "CapEff:\t00000000a80425fb" in output   # Docker's default set, no more


ESCAPE_TESTS = ("tests/integration/test_isolation.py",
                "tests/integration/test_isolation_workdir.py",
                "tests/integration/test_hostile_corpus.py")


def test_the_escape_tests_pass_inside_the_container(engine: Docker, tmp_path: Path) -> None:
    """The isolation tests and the hostile corpus, run by pytest inside the container as
    uid 1000 (as tests/rootless/run runs them on the host): distill rootless, RUN sharing
    the container's /proc. Their /tmp is a volume (overlayfs cannot put an upper
    directory on the container's overlay root); busybox and the probe come from the host
    (the image has no compiler)."""
    compile_probe(tmp_path)     # tmp_path/probe
    os.chmod(tmp_path, 0o755)
    proc = _unprivileged(
        engine, "rootless-escape-store", "rootless-escape-tmp:/tmp",
        "/bin/busybox:/usr/bin/busybox:ro", f"{tmp_path}:/probe:ro",
        env=("DISTILL_TEST_PROBE=/probe/probe", "PYTHONDONTWRITEBYTECODE=1"),
        workdir=f"{ROOTLESS_TOP}/repo",
        command=(f"{ROOTLESS_TOP}/venv/bin/python -m pytest -p no:cacheprovider -q -s "
                 f"-m 'not needs_root' {' '.join(ESCAPE_TESTS)}"))
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert re.search(r"hostile corpus \(rootless\): \d+ passed, 0 failed", output), output[-3000:]
    summary = output.strip().splitlines()[-1]
    assert re.match(r"\d+ passed, \d+ deselected in ", summary), summary
