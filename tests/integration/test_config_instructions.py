"""SHELL, STOPSIGNAL, VOLUME, MAINTAINER, HEALTHCHECK and ONBUILD, built for real on busybox
and read back by skopeo (the config) and umoci (the files), never by distill itself.

``skopeo inspect --config`` shows the config as OCI defines it, which has no Healthcheck,
Shell or OnBuild; those Docker extensions are read from the raw config blob
(``--config --raw``), where BuildKit writes them too.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunDistill
from tests.helpers.readback import skopeo_inspect, umoci_unpack

pytestmark = pytest.mark.integration

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _context(tmp_path: Path, dockerfile: str, **files: str) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    for name, text in files.items():
        (ctx / name).write_text(text)
    return ctx


def _build(distill: RunDistill, ctx: Path, out: Path,
           *args: str) -> subprocess.CompletedProcess[str]:
    return distill("build", "--progress", "plain", "--output",
                   f"type=oci,dest={out},tar=false", "-t", "cfg:latest", *args, str(ctx))


def _raw_config(layout: Path) -> dict[str, Any]:
    proc = subprocess.run(["skopeo", "inspect", "--config", "--raw", f"oci:{layout}:latest"],
                          capture_output=True, check=True)
    return json.loads(proc.stdout)


def _files(layout: Path, tmp_path: Path) -> Path:
    return umoci_unpack(layout, "latest", tmp_path / f"bundle-{uuid.uuid4().hex[:8]}")


EVERYTHING = """\
FROM busybox
ARG SIG=SIGQUIT
ARG DATA=/srv/data
MAINTAINER Jane Doe <jane@example.com>
RUN echo flags=$- > /default-shell.txt
SHELL ["/bin/sh", "-e", "-u", "-c"]
RUN echo flags=$- > /new-shell.txt
RUN ["/bin/sh", "-c", "echo flags=$- > /exec-form.txt"]
STOPSIGNAL ${SIG}
VOLUME $DATA /var/log
VOLUME ["/cache", "/srv/${SIG}"]
RUN mkdir -p /srv/data && echo kept > /srv/data/after-volume.txt
HEALTHCHECK --interval=30s --timeout=1.5s --start-period=1m --start-interval=2s --retries=4 \\
    CMD wget -q -O /dev/null http://localhost/ || exit 1
ONBUILD RUN echo "triggered" > /triggered.txt
ONBUILD COPY app.txt /app/
ENTRYPOINT exec echo "entry"
CMD shell   form
"""


def test_every_instruction_in_the_config(distill: RunDistill, busybox_image: str,
                                         tmp_path: Path) -> None:
    ctx = _context(tmp_path, EVERYTHING, **{"app.txt": "app\n"})
    out = tmp_path / "out"
    _build(distill, ctx, out)

    oci = skopeo_inspect(out, "latest")["config"]        # the OCI view
    assert oci["author"] == "Jane Doe <jane@example.com>"
    cfg = oci["config"]
    assert cfg["StopSignal"] == "SIGQUIT"
    assert cfg["Volumes"] == {"/srv/data": {}, "/var/log": {}, "/cache": {}, "/srv/SIGQUIT": {}}
    shell = ["/bin/sh", "-e", "-u", "-c"]
    assert cfg["Entrypoint"] == [*shell, 'exec echo "entry"']
    assert cfg["Cmd"] == [*shell, "shell   form"]
    assert cfg["Env"] == [f"PATH={DEFAULT_PATH}"]

    raw = _raw_config(out)["config"]                     # Docker's extensions
    assert raw["Shell"] == shell
    assert raw["Healthcheck"] == {
        "Test": ["CMD-SHELL", "wget -q -O /dev/null http://localhost/ || exit 1"],
        "Interval": 30_000_000_000, "Timeout": 1_500_000_000, "StartPeriod": 60_000_000_000,
        "StartInterval": 2_000_000_000, "Retries": 4}
    assert raw["OnBuild"] == ['RUN echo "triggered" > /triggered.txt', "COPY app.txt /app/"]

    history = [h["created_by"] for h in _raw_config(out)["history"]]
    assert "MAINTAINER Jane Doe <jane@example.com>" in history
    assert "SHELL [/bin/sh -e -u -c]" in history
    assert "STOPSIGNAL SIGQUIT" in history
    assert "VOLUME [/srv/data /var/log]" in history and "VOLUME [/cache /srv/SIGQUIT]" in history
    assert not any("ONBUILD" in h or "triggered" in h for h in history)   # BuildKit adds none

    root = _files(out, tmp_path)
    for name, has_eu in (("default-shell", False), ("new-shell", True), ("exec-form", False)):
        flags = (root / f"{name}.txt").read_text()          # "$-" of the shell RUN used
        assert ("e" in flags and "u" in flags) == has_eu, (name, flags)
    # BuildKit's VOLUME is only metadata: what a later RUN writes there stays in the image
    assert (root / "srv/data/after-volume.txt").read_text() == "kept\n"
    assert not (root / "srv/SIGQUIT").exists() and not (root / "cache").exists()
    # triggers do not run in the stage that declares them
    assert not (root / "triggered.txt").exists() and not (root / "app").exists()


def test_healthcheck_none_and_replacement(distill: RunDistill, busybox_image: str,
                                          tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM busybox AS a\nHEALTHCHECK --interval=5s CMD true\n"
                             "FROM a AS b\nHEALTHCHECK --retries=2 CMD [\"/bin/check\", \"x\"]\n"
                             "FROM b\nHEALTHCHECK NONE\n")
    out = tmp_path / "out"
    _build(distill, ctx, out, "--target", "b")
    assert _raw_config(out)["config"]["Healthcheck"] == {"Test": ["CMD", "/bin/check", "x"],
                                                         "Retries": 2}
    out2 = tmp_path / "out2"
    _build(distill, ctx, out2)
    assert _raw_config(out2)["config"]["Healthcheck"] == {"Test": ["NONE"]}


ONBUILD_PARENT = """\
FROM busybox AS builder
RUN echo built > /artifact

FROM builder AS parent
RUN echo parent > /stage.txt
ONBUILD RUN echo "trigger saw $(cat /stage.txt), TRIGGER_ENV=${TRIGGER_ENV:-unset}" > /triggered.txt
ONBUILD COPY app.txt /app/
ONBUILD ENV TRIGGER_ENV=set
ONBUILD COPY --from=builder /artifact /copied-artifact
"""


def test_onbuild_fires_in_a_child_stage(distill: RunDistill, busybox_image: str,
                                        tmp_path: Path) -> None:
    dockerfile = ONBUILD_PARENT + (
        "\nFROM parent AS child\n"
        "RUN echo \"child: TRIGGER_ENV=$TRIGGER_ENV\" > /child.txt\n"
        "ONBUILD RUN echo grandchild-trigger > /from-child.txt\n"
        "\nFROM child\n"
        "RUN cat /from-child.txt > /grandchild.txt\n")
    ctx = _context(tmp_path, dockerfile, **{"app.txt": "application\n"})
    out = tmp_path / "out"
    proc = _build(distill, ctx, out, "--target", "child")
    assert "[child 2/7] ONBUILD RUN echo" in proc.stdout + proc.stderr

    root = _files(out, tmp_path)
    assert (root / "triggered.txt").read_text() == "trigger saw parent, TRIGGER_ENV=unset\n"
    assert (root / "app/app.txt").read_text() == "application\n"
    assert (root / "copied-artifact").read_text() == "built\n"
    assert (root / "child.txt").read_text() == "child: TRIGGER_ENV=set\n"
    raw = _raw_config(out)["config"]
    assert raw["Env"] == [f"PATH={DEFAULT_PATH}", "TRIGGER_ENV=set"]
    assert raw["OnBuild"] == ["RUN echo grandchild-trigger > /from-child.txt"]  # its own only

    # the grandchild runs the child's trigger, not the parent's again
    out2 = tmp_path / "out2"
    _build(distill, ctx, out2)
    root2 = _files(out2, tmp_path)
    assert (root2 / "from-child.txt").read_text() == "grandchild-trigger\n"
    assert "OnBuild" not in _raw_config(out2)["config"]


def test_onbuild_fires_from_a_tagged_image(distill: RunDistill, busybox_image: str,
                                           tmp_path: Path) -> None:
    tag = f"onbuild-parent-{uuid.uuid4().hex[:8]}:1"
    (tmp_path / "p").mkdir()
    parent = _context(tmp_path / "p", 'FROM busybox\nSHELL ["/bin/sh", "-e", "-c"]\n'
                      'ONBUILD RUN echo "from the image, shell flags $-" > /triggered.txt\n'
                      "ONBUILD COPY . /src/\n"
                      "ONBUILD HEALTHCHECK --timeout=3s CMD true\n"
                      "LABEL parent=yes\n")
    distill("build", "--progress", "quiet", "-t", tag, str(parent))

    child = tmp_path / "c"
    child.mkdir()
    (child / "Dockerfile").write_text(f"FROM {tag}\nRUN cat /triggered.txt > /seen.txt\n")
    (child / "hello.txt").write_text("child context\n")
    out = tmp_path / "out"
    _build(distill, child, out)
    root = _files(out, tmp_path)
    assert (root / "triggered.txt").read_text().startswith("from the image, shell flags ")
    assert "e" in (root / "triggered.txt").read_text().split()[-1]   # the inherited SHELL
    assert (root / "seen.txt").read_text() == (root / "triggered.txt").read_text()
    # ONBUILD COPY reads the child's build context, not the parent's
    assert (root / "src/hello.txt").read_text() == "child context\n"
    assert (root / "src/Dockerfile").exists()
    raw = _raw_config(out)["config"]
    assert "OnBuild" not in raw
    assert raw["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Timeout": 3_000_000_000}
    assert raw["Labels"] == {"parent": "yes"}


def test_trigger_errors_point_at_from(distill: RunDistill, busybox_image: str,
                                      tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM busybox AS parent\nONBUILD RUN exit 3\n"
                             "\nFROM parent\nRUN true\n")
    proc = distill("build", str(ctx), check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert f"{ctx / 'Dockerfile'}:4: " in proc.stderr and "exit code: 3" in proc.stderr
    assert " 4 | FROM parent" in proc.stderr


def test_trigger_copy_from_another_stage(distill: RunDistill, busybox_image: str,
                                         tmp_path: Path) -> None:
    """BuildKit adds a stage named by a trigger's COPY --from to the graph; distill takes it
    only when the stage depends on it anyway, and says so otherwise."""
    head = ("FROM busybox AS other\nRUN echo other > /o.txt\n"
            "FROM busybox AS parent\nONBUILD COPY --from=other /o.txt /x\n")
    ctx = _context(tmp_path, head + "FROM parent\nCOPY --from=other /o.txt /y\n")
    out = tmp_path / "out"
    _build(distill, ctx, out)
    root = _files(out, tmp_path)
    assert (root / "x").read_text() == (root / "y").read_text() == "other\n"

    (ctx / "Dockerfile").write_text(head + "FROM parent AS child\n"
                                    "FROM busybox\nCOPY --from=other /o.txt /y\n"
                                    "COPY --from=child /x /x\n")
    proc = distill("build", str(ctx), check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert f"{ctx / 'Dockerfile'}:5: " in proc.stderr and "not support that yet" in proc.stderr

    (ctx / "Dockerfile").write_text(head + "FROM parent\n")     # 'other' is not even planned
    proc = distill("build", str(ctx), check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert f"{ctx / 'Dockerfile'}:5: " in proc.stderr and "'other' not found" in proc.stderr
    assert "ONBUILD trigger" in proc.stderr


@pytest.mark.parametrize(("dockerfile", "line", "message"), [
    ("FROM busybox\nARG S=SIGNOPE\nSTOPSIGNAL $S\n", 3, "invalid signal: SIGNOPE"),
    ("FROM busybox\nVOLUME /a $EMPTY\n", 2, "VOLUME specified can not be an empty string"),
    ("FROM busybox\nSHELL /bin/bash -c\n", 2, "SHELL requires the arguments to be in JSON form"),
    ("FROM busybox\nHEALTHCHECK --interval=1 CMD true\n", 2,
     'time: missing unit in duration "1"'),
    ("FROM busybox\nONBUILD ONBUILD RUN x\n", 2, "Chaining ONBUILD"),
])
def test_mistakes_point_at_their_line(distill: RunDistill, busybox_image: str, tmp_path: Path,
                                      dockerfile: str, line: int, message: str) -> None:
    ctx = _context(tmp_path, dockerfile)
    proc = distill("build", str(ctx), check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert f"error: {ctx / 'Dockerfile'}:{line}: {message}" in proc.stderr
