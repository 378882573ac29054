"""EXPOSE specs against BuildKit's convert_expose_test vectors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.dockerfile.ports import parse_port, parse_ports
from distill.errors import DockerfileError

DATA = json.loads((Path(__file__).resolve().parent / "data" / "dockerfile2llb" /
                   "convert_expose_test.json").read_text())
CASES = [("port", c) for c in DATA["parse_port"]] + [("ports", c) for c in DATA["parse_ports"]]


def _check(kind: str, case: dict) -> None:
    run = (lambda: parse_port(case["spec"])) if kind == "port" else (
        lambda: parse_ports(case["specs"]))
    if "error" in case:
        with pytest.raises(DockerfileError) as e:
            run()
        if isinstance(case["error"], str):
            assert str(e.value) == case["error"]
    else:
        assert run() == case["expected"]


@pytest.mark.parametrize("kind,case", CASES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(CASES)])
def test_expose_vector(kind: str, case: dict) -> None:
    _check(kind, case)


def test_expose_conformance_summary(capsys: pytest.CaptureFixture[str]) -> None:
    failed = 0
    for kind, case in CASES:
        try:
            _check(kind, case)
        except AssertionError:
            failed += 1
    with capsys.disabled():
        print(f"\nexpose conformance: {len(CASES) - failed} passed, {failed} failed")
    assert len(CASES) == 17 and failed == 0
