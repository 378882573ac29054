"""--output SPEC parsing: type=local's devices= and setuid= options."""

from __future__ import annotations

import pytest

from distill.builder.export import OutputSpec
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
