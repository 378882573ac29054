"""An instruction lives in three tables, one per layer: how the parser splits its
arguments (``_lineparsers._DISPATCH``, BuildKit's), how its node becomes a typed value
(``typed.PARSERS``) and how it is built (``builder/steps.HANDLERS``). Adding one to some
of them but not all fails here, naming what is missing (an instruction missing from the
parser's table would otherwise lose its arguments silently). A RUN mount type lives in
two: the parser's ``MOUNT_TYPES`` and the builder's ``runmounts.MOUNT_KINDS``."""

from __future__ import annotations

import dataclasses
import inspect

from distill.builder.copystep import TriggerCopy
from distill.builder.steps import HANDLERS
from distill.dockerfile import instructions as ins
from distill.dockerfile._lineparsers import _DISPATCH
from distill.dockerfile.typed import PARSERS


def test_the_parser_and_the_typed_layer_know_the_same_keywords() -> None:
    assert not set(_DISPATCH) - set(PARSERS), "no typed parser for these keywords"
    assert not set(PARSERS) - set(_DISPATCH), "the parser's _DISPATCH lacks these keywords"


def test_every_typed_instruction_has_a_step() -> None:
    kinds = {cls for _, cls in inspect.getmembers(ins, inspect.isclass)
             if dataclasses.is_dataclass(cls) and issubclass(cls, ins.Instruction)
             and cls not in (ins.Instruction, ins.From)}   # FROM starts a stage: the scheduler's
    assert kinds, "no instruction classes found"
    missing = sorted(k.__name__ for k in kinds - set(HANDLERS))
    assert not missing, f"no entry in builder/steps.HANDLERS for {missing}"
    # TriggerCopy: an ONBUILD COPY of the parent image, made by the builder, not parsed
    dead = sorted(k.__name__ for k in set(HANDLERS) - kinds - {TriggerCopy})
    assert not dead, f"HANDLERS entries for no instruction of instructions.py: {dead}"


def test_every_mount_type_is_prepared() -> None:
    """A RUN --mount type the parser accepts but the builder has no entry for would
    fail with a KeyError at build time; one the builder knows but the parser refuses
    is dead code."""
    from distill.builder.runmounts import MOUNT_KINDS
    from distill.dockerfile.mounts import MOUNT_TYPES

    missing = sorted(set(MOUNT_TYPES) - set(MOUNT_KINDS))
    assert not missing, f"no entry in builder/runmounts.MOUNT_KINDS for {missing}"
    dead = sorted(set(MOUNT_KINDS) - set(MOUNT_TYPES))
    assert not dead, f"MOUNT_KINDS entries the parser's MOUNT_TYPES refuses: {dead}"
