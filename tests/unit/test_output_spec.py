"""--output SPEC parsing: type=local's devices= and setuid= options."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill.builder.export import OUTPUT_TYPES, OutputSpec
from distill.errors import UsageError


def test_local_defaults_are_safe() -> None:
    spec = OutputSpec.parse("type=local,dest=out")
    assert (spec.devices, spec.setuid) == (False, False)
    assert OutputSpec.parse("out") == spec


@pytest.mark.parametrize(("text", "devices", "setuid"), [
    ("type=local,dest=o,devices=true", True, False),
    ("type=local,dest=o,setuid=true", False, True),
    ("type=local,dest=o,devices=1,setuid=TRUE", True, True),
    ("type=local,dest=o,devices=false,setuid=0", False, False),
])
def test_local_options(text: str, devices: bool, setuid: bool) -> None:
    spec = OutputSpec.parse(text)
    assert (spec.devices, spec.setuid) == (devices, setuid)


@pytest.mark.parametrize(("text", "needle"), [
    ("type=oci,dest=o.tar,devices=true", "only applies to type=local"),
    ("type=docker,dest=o.tar,setuid=true", "only applies to type=local"),
    ("type=local,dest=o,devices=maybe", "expected true or false"),
    ("type=oci,dest=o,tar=perhaps", "expected true or false"),
])
def test_bad_local_options(text: str, needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        OutputSpec.parse(text)


@pytest.mark.parametrize(("text", "kind", "push", "dest"), [
    ("type=oci,dest=o.tar", "oci", False, "o.tar"),
    ("type=docker,dest=-", "docker", False, "-"),
    ("type=image", "image", False, ""),
    ("type=image,push=true", "image", True, ""),
    ("type=registry", "image", True, ""),
    ("dir", "local", False, "dir"),
])
def test_every_output_type_parses(text: str, kind: str, push: bool, dest: str) -> None:
    spec = OutputSpec.parse(text)
    assert (spec.type, spec.push, spec.dest) == (kind, push, dest)


@pytest.mark.parametrize(("text", "needle"), [
    ("type=docker,dest=o,tar=false", "tar= only applies to type=oci"),
    ("type=image,dest=o", "dest= only applies to type=oci, type=docker, type=local"),
    ("type=oci,dest=o.tar,push=true", "cannot push"),
    ("type=local,dest=o,name=x", "has no name="),
    ("type=local,dest=o,compression=zstd", "writes files, not compressed layers"),
    ("type=oci", "needs dest=PATH"),
    ("type=oci,dest=o,colour=blue", "unsupported --output options for type=oci: colour"),
    ("type=floppy,dest=o", "unsupported output type"),
])
def test_output_options_each_type_refuses(text: str, needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        OutputSpec.parse(text)


def test_every_output_type_has_a_writer_and_parses() -> None:
    """An entry of OUTPUT_TYPES is all a new output type needs: each one parses with
    only the options it declares."""
    for kind, output in OUTPUT_TYPES.items():
        text = f"type={kind}" + (",dest=somewhere" if output.dest is not None else "")
        assert OutputSpec.parse(text).type in OUTPUT_TYPES
        assert callable(output.write)


@pytest.mark.parametrize(("text", "is_tar"), [
    ("type=docker,dest=-", True), ("type=docker,dest=o.tar", True),
    ("type=oci,dest=o.tar", True), ("type=oci,dest=o,tar=false", False),
    ("type=local,dest=o", False),
])
def test_which_outputs_write_one_file(text: str, is_tar: bool) -> None:
    """Regression: type=docker counted as a directory output once the output types
    became a table, so `-o type=docker,dest=-` was refused and an existing tar could
    not be overwritten."""
    assert OutputSpec.parse(text).is_tar is is_tar


def test_check_before_the_build(tmp_path: Path) -> None:
    existing = tmp_path / "image.tar"
    existing.write_bytes(b"old")
    OutputSpec.parse(f"type=docker,dest={existing}").check()   # overwritten after
    OutputSpec.parse("type=docker,dest=-").check()
    with pytest.raises(UsageError, match="is a directory"):
        OutputSpec.parse(f"type=docker,dest={tmp_path}").check()
    with pytest.raises(UsageError, match="exists and is not a directory"):
        OutputSpec.parse(f"type=local,dest={existing}").check()
    with pytest.raises(UsageError, match="cannot be written to stdout"):
        OutputSpec.parse("type=oci,dest=-,tar=false").check()
