from __future__ import annotations

import pytest

from distill.errors import UsageError
from distill.oci.reference import normalize_name, normalize_reference, parse_reference


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


D = "sha256:" + "a" * 64


@pytest.mark.parametrize("text,full", [
    # the cases docker/distribution's normalize tests turn on
    ("python", "docker.io/library/python"),
    ("python:3.12", "docker.io/library/python:3.12"),
    ("library/python:3.12", "docker.io/library/python:3.12"),
    ("docker.io/python", "docker.io/library/python"),
    ("index.docker.io/library/python:3.12", "docker.io/library/python:3.12"),
    ("registry-1.docker.io/bitnami/redis", "docker.io/bitnami/redis"),
    ("bitnami/redis", "docker.io/bitnami/redis"),
    ("localhost/app", "localhost/app"),
    ("localhost:5000/app:v1", "localhost:5000/app:v1"),
    ("127.0.0.1:5000/team/app", "127.0.0.1:5000/team/app"),
    ("gcr.io/distroless/static", "gcr.io/distroless/static"),
    ("Example/app", "Example/app"),                 # capitals: a host, not a namespace
    ("foo/bar/baz", "docker.io/foo/bar/baz"),
    (f"python@{D}", f"docker.io/library/python@{D}"),
    (f"python:3@{D}", f"docker.io/library/python:3@{D}"),
])
def test_normalize(text: str, full: str) -> None:
    assert str(normalize_reference(text)) == full


@pytest.mark.parametrize("full,familiar", [
    ("docker.io/library/python:3.12", "python:3.12"),
    ("docker.io/bitnami/redis:7", "bitnami/redis:7"),
    ("docker.io/library/a/b:1", "library/a/b:1"),
    ("localhost:5000/app:v1", "localhost:5000/app:v1"),
])
def test_familiar(full: str, familiar: str) -> None:
    assert normalize_reference(full).familiar == familiar


def test_parts() -> None:
    ref = normalize_reference("localhost:5000/team/app:v1")
    assert (ref.domain, ref.repository, ref.tag) == ("localhost:5000", "team/app", "v1")


@pytest.mark.parametrize("text", ["a" * 64, "UPPER", "python:3.12:x", "docker.io/Library/x"])
def test_normalize_invalid(text: str) -> None:
    with pytest.raises(UsageError):
        normalize_reference(text)


def test_normalize_name_adds_latest() -> None:
    assert normalize_name("python") == "docker.io/library/python:latest"
    assert normalize_name(f"python@{D}") == f"docker.io/library/python@{D}"
