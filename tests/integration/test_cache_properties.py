"""Property: the cache is never wrong and misses only for a reason (issue 10).

For generated multi-stage Dockerfiles (COPY and ADD with their flags, RUN, WORKDIR) over
a context, and a generated edit of that context (content, mode, owner, an mtime-only
touch, a file .dockerignore leaves out, a new file), the build after the edit, from the
cache, makes exactly the image a --no-cache build makes (the same digest: every layer,
byte for byte, and the config). An mtime-only touch or an ignored file is a hit: no step
runs and the image is the one before the edit.

SOURCE_DATE_EPOCH (older than every file here) makes layers independent of when a step
ran, so that "the same image" can be asked of a cached and an uncached build.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import RunDistill
from tests.helpers.progress import parse_plain
from tests.helpers.rootless import ROOTLESS

pytestmark = pytest.mark.integration

EPOCH = "1000000000"
FILES = {"a.txt": "a\n", "b.log": "b\n", "dir/c.txt": "c\n", "dir/sub/d.txt": "d\n",
         "run.sh": "echo hi\n"}
IGNORE = "*.log\nignored/\n"

STEPS = [
    "COPY . /app/",
    "COPY a.txt /a",
    "COPY --chmod=0600 a.txt /a600",
    "COPY --chown=1000:1000 dir /owned/",
    "COPY --link dir /linked/",
    "COPY --exclude=*.txt dir /ex/",
    "COPY --parents dir/./sub /par/",
    "ADD dir/c.txt run.sh /added/",
    "COPY *.txt /globbed/",
    "RUN busybox find / -xdev -name '*.txt' | busybox sort > /found",
    "RUN busybox touch /touched && busybox mkdir -p /made/x",
    "RUN --mount=type=bind,source=dir,target=/m busybox cat /m/c.txt > /from-bind",
    "RUN busybox echo no-change",
    "WORKDIR /work",
    "WORKDIR /bin",
    "ENV X=1",
]
FINAL_STEPS = ["COPY --from=s0 /app /s0app/", "COPY --from=s0 / /all/",
               "COPY --from=s0 --chmod=0640 /a* /froms0/", *STEPS]
# (an ordinary user cannot give its files to another owner: tests/rootless/run edits the rest)
EDITS = ["content", "mode", *([] if ROOTLESS else ["owner"]), "touch", "ignored", "new"]


@st.composite
def dockerfiles(draw: st.DrawFn) -> str:
    first = draw(st.lists(st.sampled_from(STEPS), min_size=0, max_size=4))
    lines = ["FROM busybox AS s0", "COPY . /app/", *first]   # what COPY --from=s0 takes
    if draw(st.booleans()):
        lines += ["FROM busybox", *draw(st.lists(st.sampled_from(FINAL_STEPS), min_size=1,
                                                 max_size=3))]
    return "\n".join(lines) + "\n"


def _apply(ctx: Path, edit: str, target: str) -> None:
    path = ctx / target
    if edit == "content":
        path.write_text(path.read_text() + "more\n")
    elif edit == "mode":
        os.chmod(path, 0o755 if (path.stat().st_mode & 0o111) == 0 else 0o644)
    elif edit == "owner":
        os.chown(path, 1234, 1234)
    elif edit == "touch":      # another time, still newer than the epoch
        later = time.time_ns() + 7_654_321_987
        os.utime(path, ns=(later, later))
    elif edit == "ignored":
        (ctx / "ignored").mkdir(exist_ok=True)
        (ctx / "ignored/new.txt").write_text("ignored\n")
        (ctx / "x.log").write_text("ignored\n")
    elif edit == "new":
        (ctx / "dir/new.txt").write_text("new\n")


def _steps_run(log: str) -> int:
    return sum(1 for s in parse_plain(log) if " 1/" not in s.title and s.outcome != "CACHED"
               and not s.instruction.startswith("ENV "))


@pytest.fixture(scope="module")
def prop_store(distill: RunDistill, busybox_tar: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cache-prop-store")
    distill("import", str(busybox_tar), "busybox:latest", root=root)
    return root


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text=dockerfiles(), edit=st.sampled_from(EDITS), target=st.sampled_from(sorted(FILES)))
def test_a_cached_build_is_the_uncached_build(distill: RunDistill, prop_store: Path,
                                              tmp_path_factory: pytest.TempPathFactory,
                                              text: str, edit: str, target: str) -> None:
    ctx = tmp_path_factory.mktemp("prop-ctx")
    shutil.rmtree(ctx)
    for rel, content in FILES.items():
        (ctx / rel).parent.mkdir(parents=True, exist_ok=True)
        (ctx / rel).write_text(content)
    (ctx / ".dockerignore").write_text(IGNORE)
    (ctx / "Dockerfile").write_text(text)
    env = {"SOURCE_DATE_EPOCH": EPOCH}

    def build(*flags: str) -> tuple[str, str]:
        proc = distill("build", "--progress", "plain", *flags, str(ctx), root=prop_store,
                       env=env)
        return proc.stdout.strip().splitlines()[-1], proc.stderr

    before, _ = build()
    _apply(ctx, edit, target)
    cached, log = build()
    fresh, _ = build("--no-cache")
    shown = f"Dockerfile:\n{text}edit: {edit} {target}\n{log[-3000:]}"
    assert cached == fresh, shown
    if edit in ("touch", "ignored"):
        assert _steps_run(log) == 0, shown
        assert cached == before, shown
