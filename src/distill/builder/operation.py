"""One immutable record per cached step, and its cache key.

Between the plan and execution every step that can make a layer (RUN, COPY, ADD,
WORKDIR) becomes an :class:`Operation`: the instruction as written (every field of its
dataclass except where it stands in the Dockerfile), the values it was expanded to,
the build settings that change what it writes, the parent's identity (its diff_ids) and
the content digests of what it reads. The cache key is the sha256 of that record's
canonical encoding, salted with :data:`CACHE_FORMAT`.

No handler writes a key by hand: a handler says what it expanded and what it reads, and
the instruction's fields are taken whole, so a flag added to an instruction is in the key
the day it is added (an unencodable value is an error, not a silent omission).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from distill.dockerfile import instructions as ins

#: Bump when what a step does for the same record changes (a new COPY rule, another layer
#: format): entries written by an older distill then never match.
#:   1: keys without a version (up to distill 0.x of issue 9)
#:   2: one canonical record per operation; COPY --link in the key; sub-second mtimes
CACHE_FORMAT = 2

#: Where an instruction stands in the Dockerfile, and its text as written: not what it
#: does (moving a step down a line or re-indenting it keeps its cache entry).
_NOT_INPUTS = frozenset({"location", "original"})


@dataclass(frozen=True)
class Operation:
    """Everything one step's result depends on. ``key`` is its cache key."""

    kind: str                              # the instruction's type name
    parent: tuple[str, ...]                # the parent image's diff_ids
    instruction: str                       # canonical JSON of the instruction's fields
    expanded: str                          # canonical JSON: its values after expansion
    inputs: str                            # canonical JSON: digests of what it reads
    settings: str                          # canonical JSON: build settings it depends on

    @classmethod
    def of(cls, inst: ins.Instruction, parent: tuple[str, ...], *,
           expanded: Mapping[str, object], inputs: Mapping[str, object] | None = None,
           settings: Mapping[str, object] | None = None,
           leave_out: frozenset[str] = frozenset()) -> Operation:
        """The record of ``inst`` on a parent with these diff_ids. ``leave_out`` names
        fields whose content the caller puts in ``inputs`` by digest instead."""
        fields = {f.name: getattr(inst, f.name) for f in dataclasses.fields(inst)
                  if f.name not in _NOT_INPUTS | leave_out}
        return cls(type(inst).__name__, tuple(parent), canonical(fields), canonical(expanded),
                   canonical(inputs or {}), canonical(settings or {}))

    def encode(self) -> bytes:
        record = {"format": CACHE_FORMAT, "kind": self.kind, "parent": list(self.parent),
                  "instruction": self.instruction, "expanded": self.expanded,
                  "inputs": self.inputs, "settings": self.settings}
        # surrogatepass: names that are not UTF-8 (os.fsdecode's surrogates) stay distinct
        return canonical(record).encode("utf-8", "surrogatepass")

    @property
    def key(self) -> str:
        return hashlib.sha256(self.encode()).hexdigest()


def canonical(value: object) -> str:
    """One text per value: JSON with sorted keys and no spaces; dataclasses as their
    fields (with their type's name), tuples as lists, bytes as hex. Anything else is a
    TypeError, so a value that cannot be encoded is never left out of a key."""
    return json.dumps(_plain(value), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False)


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray)):
        return {"hex": bytes(value).hex()}
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"cache record key {k!r} is not a string")
            out[k] = _plain(v)
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_plain(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"@type": type(value).__name__,
                **{f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    raise TypeError(f"a {type(value).__name__} cannot be part of a cache record")
