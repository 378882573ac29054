"""ARG scoping as BuildKit does it, read back from the image config by skopeo: a stage built
on another stage inherits its ARG values (under its Env), and an ARG with a value declared
after an ENV of the same name wins for expansion without changing Env. The differential
case args_stage_order checks the same against BuildKit itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import RunDistill
from tests.helpers.readback import skopeo_inspect

pytestmark = pytest.mark.integration

DOCKERFILE = """\
FROM busybox AS base
ENV W=env-w
ARG W=arg-w
ARG INHERITED=from-base
ARG SHADOWED=arg
ENV SHADOWED=env AFTER_W=$W
ARG R=1
ARG R
LABEL w=$W r=$R

FROM base
LABEL inherited=$INHERITED shadowed=$SHADOWED child-w=$W
"""


def test_arg_order_and_stage_inheritance(distill: RunDistill, busybox_image: str,
                                         tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    layout = tmp_path / "layout"
    distill("build", "-t", "args:latest", "-o", f"type=oci,dest={layout},tar=false", str(tmp_path))
    config = skopeo_inspect(layout, "latest")["config"]["config"]
    assert config["Labels"] == {"w": "arg-w", "r": "1", "inherited": "from-base",
                                "shadowed": "env", "child-w": "env-w"}
    assert [e for e in config["Env"] if not e.startswith("PATH=")] == [
        "W=env-w", "SHADOWED=env", "AFTER_W=arg-w"]
