"""Fuzzing whole builds: a generated Dockerfile either builds or fails with one clean error.

tests/unit/test_fuzz_frontend.py stops at the plan; this one runs ``distill build`` as a user
does, on the busybox base, with Dockerfiles shaped like real ones (stages, RUN in its forms
and with mounts, COPY/ADD with flags, config instructions, heredocs) plus noise. Every build
must exit 0, or exit 1 (a build error) or 2 (a usage error, such as an unknown --target)
with an ``error:`` line and no Python traceback; afterwards the store still lists its images.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.conftest import RunDistill

pytestmark = pytest.mark.integration

CONTEXT_FILES = {"a.txt": "a\n", "b.log": "b\n", "dir/c.txt": "c\n", "dir/sub/d.txt": "d\n"}

RUN_COMMANDS = ["true", "false", "exit 3", "echo hi > /f", "mkdir -p /d/e && touch /d/e/f",
                "rm -rf /etc/passwd", "ln -s /nowhere /l", "id -u > /uid", "cat /missing",
                "echo $X > /x", "chmod 4755 /bin/busybox", "mkfifo /fifo", "ls /run/secrets"]
SOURCES = ["a.txt", "*.txt", "dir", "dir/", "dir/**", "missing", "../a.txt", "/a.txt", "b.log",
           ".", "*"]
DESTS = ["/dst/", "/dst", ".", "/", "../../escape/", "/etc/passwd", "/bin/vi", "rel/",
         "/d/e/f/"]
USERS = ["root", "app", "1000:1000", "nobody", "ghost", "app:staff", "0:ghost"]
FLAGS = ["", "--chown=1000:1000 ", "--chmod=0600 ", "--chmod=bad ", "--link ",
         "--exclude=*.log ", "--parents ", "--chown=ghost "]
MOUNTS = ["", "--mount=type=cache,target=/c ", "--mount=type=tmpfs,target=/t ",
          "--mount=type=bind,target=/ctx ", "--mount=type=bind,from=s0,target=/s0 ",
          "--mount=type=secret,id=nope ", "--mount=type=bogus ", "--network=none ",
          "--network=nonsense "]


@st.composite
def instruction(draw: st.DrawFn, stages: list[str]) -> str:
    kind = draw(st.integers(0, 15))
    if kind <= 3:
        cmd = draw(st.sampled_from(RUN_COMMANDS))
        form = draw(st.integers(0, 2))
        body = (f'["/bin/sh", "-c", "{cmd}"]' if form == 1
                else f"<<EOF\n{cmd}\nEOF" if form == 2 else cmd)
        return f"RUN {draw(st.sampled_from(MOUNTS))}{body}"
    if kind <= 6:
        keyword = draw(st.sampled_from(["COPY", "COPY", "ADD"]))
        flags = draw(st.sampled_from(FLAGS))
        if stages and draw(st.booleans()):
            flags += f"--from={draw(st.sampled_from([*stages, '7', 'nowhere']))} "
            src = draw(st.sampled_from(["/etc/passwd", "/d", "/missing", "/bin/busybox"]))
        else:
            src = draw(st.sampled_from(SOURCES))
        return f"{keyword} {flags}{src} {draw(st.sampled_from(DESTS))}"
    return draw(st.sampled_from([
        "ENV X=1 Y=${X:-2}", "ENV X", "ARG X=arg", "ARG", "WORKDIR /w/$X", "WORKDIR",
        f"USER {draw(st.sampled_from(USERS))}", "LABEL a=b 'c d'=e", "EXPOSE 80/tcp 1-3/udp",
        "EXPOSE 99999", 'CMD ["echo", "hi"]', "CMD echo hi", "ENTRYPOINT [", "SHELL [\"/bin/sh\", \"-c\"]",
        "SHELL sh", "HEALTHCHECK --interval=1s CMD true", "HEALTHCHECK --interval=x CMD true",
        "VOLUME /v", "STOPSIGNAL SIGKILL", "ONBUILD RUN true", "ONBUILD FROM x", "COPY <<EOF /h\nhi\nEOF",
        "MAINTAINER me", "FROMM busybox", draw(st.text(max_size=20)),
    ]))


@st.composite
def dockerfiles(draw: st.DrawFn) -> str:
    lines = []
    if draw(st.booleans()):
        lines.append(draw(st.sampled_from(["ARG BASE=busybox", "ARG BASE", "ARG X=global"])))
    stages: list[str] = []
    for index in range(draw(st.integers(1, 3))):
        base = draw(st.sampled_from(["busybox", "busybox", "scratch", "${BASE}", "nowhere:1",
                                     *stages]))
        lines.append(f"FROM {base} AS s{index}")
        for _ in range(draw(st.integers(0, 4))):
            lines.append(draw(instruction(stages)))
        stages.append(f"s{index}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def fuzz_store(distill: RunDistill, busybox_tar: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of its own: generated images (a FROM scratch one with no layer, say) stay
    out of the session's store, which other tests validate as a whole."""
    root = tmp_path_factory.mktemp("fuzz-store")
    distill("import", str(busybox_tar), "busybox:latest", root=root)
    return root


@pytest.fixture(scope="module")
def fuzz_context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ctx = tmp_path_factory.mktemp("fuzz-context")
    for rel, text in CONTEXT_FILES.items():
        (ctx / rel).parent.mkdir(parents=True, exist_ok=True)
        (ctx / rel).write_text(text)
    return ctx


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text=dockerfiles(), target=st.sampled_from([None, "s0", "s1", "s9"]))
def test_generated_builds_succeed_or_fail_cleanly(distill: RunDistill, fuzz_store: Path,
                                                  fuzz_context: Path, text: str,
                                                  target: str | None) -> None:
    dockerfile = fuzz_context / "fuzz.Dockerfile"
    dockerfile.write_text(text)
    args = ["build", "--progress", "plain", "-f", str(dockerfile), "-t", "fuzz:latest"]
    if target:
        args += ["--target", target]
    proc = distill(*args, str(fuzz_context), check=False, root=fuzz_store)
    event(f"exit {proc.returncode}")     # --hypothesis-show-statistics shows the mix
    shown = f"Dockerfile:\n{text}\nstderr:\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr + proc.stdout, shown
    assert proc.returncode in (0, 1, 2), shown
    if proc.returncode != 0:
        assert "error:" in proc.stderr, shown
    assert distill("images", root=fuzz_store).returncode == 0
