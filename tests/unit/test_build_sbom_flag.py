"""``distill build --sbom`` is read as buildx reads it: a value only after "=", so the
next word (the context) is never taken for a format."""

from __future__ import annotations

import argparse

import pytest

from distill.cli import build_flags


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    build_flags.add_parser(parser.add_subparsers())
    return parser.parse_args(["build", *argv])


@pytest.mark.parametrize(("argv", "sbom"), [
    ((".",), None), (("--sbom", "."), "spdx"), ((".", "--sbom"), "spdx"),
    (("--sbom=spdx", "."), "spdx"), (("--sbom=true", "."), "spdx"),
    (("--sbom=cyclonedx", "."), "cyclonedx"), (("--sbom=false", "."), None),
])
def test_sbom_spellings(argv: tuple[str, ...], sbom: str | None) -> None:
    args = _parse(*argv)
    assert args.sbom == sbom and args.context == "."


def test_unknown_sbom_format_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parse("--sbom=xml", ".")
    assert exit_info.value.code == 2 and "--sbom" in capsys.readouterr().err
