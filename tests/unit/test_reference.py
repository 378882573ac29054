from __future__ import annotations

import pytest

from distill.errors import UsageError
from distill.oci.reference import parse_reference


@pytest.mark.parametrize("text,name,tag", [
    ("busybox", "busybox", None),
    ("busybox:1.36", "busybox", "1.36"),
    ("localhost:5000/team/app:v1.2.3-build.45", "localhost:5000/team/app", "v1.2.3-build.45"),
    ("registry.example.com/a_b/c--d:tag", "registry.example.com/a_b/c--d", "tag"),
    ("[::1]:5000/app", "[::1]:5000/app", None),
])
def test_valid(text: str, name: str, tag: str | None) -> None:
    ref = parse_reference(text)
    assert (ref.name, ref.tag) == (name, tag)


@pytest.mark.parametrize("text", ["", "has space", ":only-a-tag", "UPPER:1", "a/", "a:b:c",
                                  "-leading", "x" * 256, "app:" + "t" * 129])
def test_invalid(text: str) -> None:
    with pytest.raises(UsageError, match="invalid reference format"):
        parse_reference(text)


def test_default_tag() -> None:
    assert str(parse_reference("app").with_default_tag()) == "app:latest"
    assert str(parse_reference("app@sha256:" + "a" * 64).with_default_tag()) == \
        "app@sha256:" + "a" * 64
