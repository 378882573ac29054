"""OCI image-spec v1.1.1 conformance of tests.helpers.oci_validate (shared/conformance, section 5).

Three sources, each case its own test id:

* ``validation-cases/{manifest,index,config,descriptor,layout}.json``: 65 documents whose
  ``fail`` flag must match;
* ``docker-v2-backwards-compat.json``: real Docker v2.2 documents; their sha256 must match
  byte for byte, then after the media type replacements they must validate as given;
* ``spec-examples.json``: the 13 examples of the spec's Markdown, which must all pass.

The data lives in ``../shared/conformance`` next to the repository, or in
``$DISTILL_CONFORMANCE``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from distill.errors import ImageError
from tests.helpers.oci_validate import validate

KINDS = ("manifest", "index", "config", "descriptor", "layout")
SHORT_NAMES = {
    "application/vnd.oci.image.manifest.v1+json": "manifest",
    "application/vnd.oci.image.index.v1+json": "index",
    "application/vnd.oci.image.config.v1+json": "config",
}


def conformance_dir() -> Path:
    """shared/conformance, or the directory named by $DISTILL_CONFORMANCE."""
    override = os.environ.get("DISTILL_CONFORMANCE")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent / "data"


OCI_DIR = conformance_dir() / "oci-image-spec" / "validation-cases"


@dataclass(frozen=True)
class Case:
    """One document, how to validate it, and what must happen."""

    id: str
    document: str
    media_type: str
    fail: bool
    sha256: str | None = None  # expected digest of the document as given, if any
    replacements: tuple[tuple[str, str], ...] = ()


def _load(name: str) -> dict[str, Any]:
    """One JSON file of the OCI conformance data."""
    data: dict[str, Any] = json.loads((OCI_DIR / name).read_text(encoding="utf-8"))
    return data


def validation_cases() -> list[Case]:
    """The 65 upstream TestXxx cases, as ``<kind>-<nn>``."""
    cases = []
    for kind in KINDS:
        data = _load(f"{kind}.json")
        for i, case in enumerate(data["cases"]):
            cases.append(
                Case(
                    f"{kind}-{i:02d}", case["document"], data["validator_media_type"], case["fail"]
                )
            )
    return cases


def backwards_compat_cases() -> list[Case]:
    """The Docker v2.2 documents, as ``docker-v2-<kind>-<n>``."""
    data = _load("docker-v2-backwards-compat.json")
    replacements = tuple(data["media_type_replacements"].items())
    cases = []
    for group in data["sets"]:
        kind = SHORT_NAMES[group["validator_media_type"]]
        for i, case in enumerate(group["cases"]):
            cases.append(
                Case(
                    f"docker-v2-{kind}-{i}",
                    case["document"],
                    group["validator_media_type"],
                    case["fail"],
                    sha256=case["sha256_digest"],
                    replacements=replacements,
                )
            )
    return cases


def spec_example_cases() -> list[Case]:
    """The spec's Markdown examples, as ``spec-<nn>-<file>-<title>``; all must pass."""
    cases = []
    for i, case in enumerate(_load("spec-examples.json")["cases"]):
        slug = re.sub(
            r"[^a-z0-9]+", "-", f"{case['file'].removesuffix('.md')} {case['title']}".lower()
        )
        cases.append(
            Case(
                f"spec-{i:02d}-{slug.strip('-')}",
                case["document"],
                case["validator_media_type"],
                False,
            )
        )
    return cases


def all_cases() -> list[Case]:
    """Every case of the three sources."""
    return validation_cases() + backwards_compat_cases() + spec_example_cases()


def run_case(case: Case) -> str | None:
    """None if the case behaves as expected, else what went wrong."""
    document = case.document
    if case.sha256 is not None:
        actual = "sha256:" + hashlib.sha256(document.encode("utf-8")).hexdigest()
        if actual != case.sha256:
            return f"digest {actual} != {case.sha256}"
    for old, new in case.replacements:
        document = document.replace(old, new)
    try:
        validate(document.encode("utf-8"), case.media_type)
    except ImageError as exc:
        return None if case.fail else f"rejected a valid document: {exc.message}"
    return "accepted an invalid document" if case.fail else None


def _params(cases: list[Case]) -> list[Any]:
    """One pytest param per case, with the case id as test id."""
    return [pytest.param(case, id=case.id) for case in cases]


def test_data_counts() -> None:
    """The data is complete: 65 validation cases, 4 Docker documents, 13 examples."""
    assert len(validation_cases()) == 65
    assert len(backwards_compat_cases()) == 4
    assert len(spec_example_cases()) == 13
    ids = [case.id for case in all_cases()]
    assert len(set(ids)) == len(ids) == 82


@pytest.mark.parametrize("case", _params(validation_cases()))
def test_validation_case(case: Case) -> None:
    problem = run_case(case)
    assert problem is None, f"{case.id}: {problem}\n{case.document}"


@pytest.mark.parametrize("case", _params(backwards_compat_cases()))
def test_docker_v2_backwards_compat(case: Case) -> None:
    problem = run_case(case)
    assert problem is None, f"{case.id}: {problem}"


@pytest.mark.parametrize("case", _params(spec_example_cases()))
def test_spec_example(case: Case) -> None:
    problem = run_case(case)
    assert problem is None, f"{case.id}: {problem}\n{case.document}"


def test_str_and_bytes_agree() -> None:
    """validate() takes the document as text or as UTF-8 bytes, with the same verdicts."""
    for case in validation_cases():
        verdicts = []
        for document in (case.document, case.document.encode("utf-8")):
            try:
                validate(document, case.media_type)
                verdicts.append(False)
            except ImageError:
                verdicts.append(True)
        assert verdicts == [case.fail, case.fail], case.id


def test_summary(capsys: pytest.CaptureFixture[str]) -> None:
    """One line for the log: how many of all the cases behave as upstream says."""
    problems = {case.id: run_case(case) for case in all_cases()}
    failed = {case_id: p for case_id, p in problems.items() if p is not None}
    with capsys.disabled():
        print(f"\noci conformance: {len(problems) - len(failed)} passed, {len(failed)} failed")
    assert not failed, failed
