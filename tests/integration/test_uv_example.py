"""examples/uv-app: a uv application (its locked dependencies installed by ``uv sync``
and compiled to bytecode, started by ``uv run`` as an unprivileged user), built with and
without SOURCE_DATE_EPOCH, loaded into Docker's engine, and answering HTTP.

``uv run`` first checks that the environment matches the project and reinstalls what does
not, which the unprivileged user cannot ("Permission denied"): the app starts only if the
image holds the environment exactly as uv left it, clamped file times included."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from tests.conftest import REPO, RunDistill
from tests.helpers.dockerd import private_dockerd
from tests.helpers.examples import example_context, free_port, get_when_up

pytestmark = pytest.mark.integration

EXAMPLE = REPO / "examples" / "uv-app"
ANSWER = "hello from distill uv (uid 10001)\n"
EPOCH = 1700000000   # 2023-11-14: older than every file the build writes


@pytest.mark.parametrize("epoch", [None, EPOCH], ids=["wall-clock", "source-date-epoch"])
def test_uv_run_starts_the_app_without_reinstalling(distill: RunDistill, debian_image: str,
                                                    tmp_path: Path, epoch: int | None) -> None:
    ctx = example_context(EXAMPLE, tmp_path / "uv-app")
    archive = tmp_path / "uv-app.tar"
    epoch_arg = ["--build-arg", f"SOURCE_DATE_EPOCH={epoch}"] if epoch else []
    distill("build", "--progress", "plain", *epoch_arg, "-t", "uv-app:test",
            "--output", f"type=docker,dest={archive}", str(ctx))
    with private_dockerd(tmp_path / "docker") as docker:
        assert "uv-app:test" in docker("load", "-i", str(archive)).stdout
        port = free_port()
        cid = docker("run", "-d", "--network=host", "-e", f"ADDR=127.0.0.1:{port}",
                     "uv-app:test").stdout.strip()
        try:
            answer = get_when_up(docker, cid, f"http://127.0.0.1:{port}/")
            logs = docker("logs", cid)
        finally:
            docker("rm", "-f", cid, check=False)
        assert answer == ANSWER
        # uv found the environment it installed as it left it: nothing reinstalled
        assert "nstalled" not in logs.stderr + logs.stdout, logs.stderr

        if epoch is None:
            return
        # The clamp was applied (the test would prove nothing otherwise): what the
        # steps wrote (uv's environment, uv itself) carries the epoch, none a later time.
        created = docker("create", "uv-app:test").stdout.strip()
        exported = tmp_path / "exported.tar"
        docker("export", "-o", str(exported), created)
        docker("rm", created)
    with tarfile.open(exported) as tar:
        times = {m.name: m.mtime for m in tar}
    written = {n: t for n, t in times.items() if n.startswith(("app/", "opt/uv/"))}
    assert max(written.values()) <= EPOCH, [n for n, t in written.items() if t > EPOCH][:5]
    assert times["app/.venv/pyvenv.cfg"] == EPOCH
    assert any(n.startswith("app/.venv/lib/") and n.endswith(".pyc") for n in times)
