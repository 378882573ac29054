"""The operation record: every field of an instruction is in the key, the key is salted
with the cache format, and nothing unencodable is silently left out."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from distill.builder import operation as op_mod
from distill.builder.operation import Operation, canonical
from distill.dockerfile import instructions as ins
from distill.dockerfile.parser import Heredoc
from distill.errors import SourceLocation

HERE = SourceLocation("Dockerfile", 1, 1, "")
PARENT = ("sha256:" + "a" * 64,)


def _changed(value: Any) -> Any:
    """Another value of the same kind."""
    if isinstance(value, bool):
        return not value
    if value is None or isinstance(value, str):
        return (value or "") + "x"
    if isinstance(value, tuple):
        if value and isinstance(value[0], Heredoc):
            return (*value, Heredoc("EOF", "body\n"))
        return (*value, "x")
    raise AssertionError(f"no change known for {value!r}")


def _key(inst: ins.Instruction, **expanded: object) -> str:
    return Operation.of(inst, PARENT, expanded=expanded).key


@pytest.mark.parametrize("inst", [
    ins.Add(HERE, "ADD a /b", sources=("a",), dest="/b"),
    ins.Copy(HERE, "COPY a /b", sources=("a",), dest="/b"),
    ins.Run(HERE, "RUN true", command=("true",), json=False),
    ins.Workdir(HERE, "WORKDIR /w", path="/w"),
], ids=lambda i: type(i).__name__)
def test_every_field_of_the_instruction_changes_the_key(inst: ins.Instruction) -> None:
    base = _key(inst)
    names = [f.name for f in dataclasses.fields(inst) if f.name not in ("location", "original")]
    assert names, "the instruction has fields"
    for name in names:
        other = dataclasses.replace(inst, **{name: _changed(getattr(inst, name))})
        assert _key(other) != base, f"{type(inst).__name__}.{name} is not in the key"


def test_copy_link_is_in_the_key() -> None:
    """The wrong hit of issue 10: COPY --link and COPY wrote through a link differently
    but shared a key."""
    plain = ins.Copy(HERE, "COPY f /bin/vi", sources=("f",), dest="/bin/vi")
    assert _key(plain) != _key(dataclasses.replace(plain, link=True))


def test_where_the_step_stands_is_not_in_the_key() -> None:
    a = ins.Run(HERE, "RUN true", command=("true",), json=False)
    b = dataclasses.replace(a, location=SourceLocation("Dockerfile", 9, 9, ""),
                            original="RUN   true")
    assert _key(a) == _key(b)


def test_parent_expansion_inputs_and_settings_each_change_the_key() -> None:
    inst = ins.Run(HERE, "RUN $X", command=("$X",), json=False)
    base = Operation.of(inst, PARENT, expanded={"argv": ["a"]}).key
    assert Operation.of(inst, ("sha256:" + "b" * 64,), expanded={"argv": ["a"]}).key != base
    assert Operation.of(inst, PARENT, expanded={"argv": ["b"]}).key != base
    assert Operation.of(inst, PARENT, expanded={"argv": ["a"]}, inputs={"x": "1"}).key != base
    assert Operation.of(inst, PARENT, expanded={"argv": ["a"]},
                        settings={"mtime_clamp": 1}).key != base


def test_the_key_is_salted_with_the_cache_format(monkeypatch: pytest.MonkeyPatch) -> None:
    """A store filled by a distill whose steps meant something else never replays them."""
    inst = ins.Workdir(HERE, "WORKDIR /w", path="/w")
    before = _key(inst)
    monkeypatch.setattr(op_mod, "CACHE_FORMAT", op_mod.CACHE_FORMAT + 1)
    assert _key(inst) != before


def test_canonical_is_one_text_per_value_and_refuses_what_it_cannot_encode() -> None:
    assert canonical({"b": 1, "a": (1, 2)}) == canonical({"a": [1, 2], "b": 1}) == \
        '{"a":[1,2],"b":1}'
    assert canonical(b"\x00\xff") == '{"hex":"00ff"}'
    assert canonical({"s": frozenset({"b", "a"})}) == '{"s":["a","b"]}'
    with pytest.raises(TypeError):
        canonical({"x": object()})
    with pytest.raises(TypeError):
        canonical({1: "not a string key"})
    # names that are not UTF-8 (surrogate-escaped) are encodable and stay distinct
    a = ins.Copy(HERE, "", sources=("\udcff",), dest="/")
    b = ins.Copy(HERE, "", sources=("\udcfe",), dest="/")
    assert _key(a) != _key(b)
