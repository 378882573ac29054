"""ONBUILD triggers: run first in a child stage, parsed on their own."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from distill.builder.copystep import TriggerCopy
from distill.builder.state import StageState
from distill.dockerfile import instructions as ins
from distill.dockerfile.typed import parse_trigger
from distill.errors import DistillError, DockerfileError
from distill.image.image import Image

if TYPE_CHECKING:
    from distill.builder.stage_context import StageContext
    from distill.plan.plan import BuildPlan, PlannedStage


def onbuild_triggers(ctx: StageContext, state: StageState,
                     plan: BuildPlan) -> tuple[StageState, tuple[ins.Instruction, ...]]:
    """The triggers a stage runs before its own instructions, and its state without them.

    As in BuildKit: a stage built on another stage of the Dockerfile runs that stage's
    ONBUILD instructions; a stage built on an image runs the image's ``OnBuild``. Either
    way the new image does not inherit them. Triggers are parsed on their own, and
    errors in them (and in running them) point at the stage's FROM line."""
    planned = {p.stage.index: p for p in plan.order}
    parent = ctx.planned.base.stage
    if parent is not None:
        exprs = [i.expression for i in planned[parent].stage.instructions
                 if isinstance(i, ins.Onbuild)]
    else:
        exprs = list(state.runtime.on_build)
    if state.runtime.on_build:
        state = state.with_image(state.image.with_runtime(replace(state.runtime, on_build=())))
    where = ctx.planned.stage.source.location
    triggers: list[ins.Instruction] = []
    for expr in exprs:
        inst = parse_trigger(expr, where)
        if isinstance(inst, ins.Copy) and inst.from_:
            fields = {f: getattr(inst, f) for f in inst.__dataclass_fields__}
            inst = TriggerCopy(**fields, source=_trigger_copy_source(ctx, inst, planned))
        triggers.append(inst)
    return state, tuple(triggers)


def _trigger_copy_source(ctx: StageContext, inst: ins.Copy,
                         planned: dict[int, PlannedStage]) -> Image:
    """A stage (by name or index) or an image. BuildKit makes the named stage a new
    dependency; distill accepts a stage only if this stage already depends on it (so it is
    built, whatever the order of parallel stages), and says so otherwise."""
    name = inst.from_ or ""
    if ctx.lexer.process_word(name, {}) != name:
        raise DockerfileError("variable expansion is not supported for --from, define a new "
                              "stage with FROM using ARG from global scope as a workaround",
                              location=inst.location)
    names = {p.stage.name: i for i, p in planned.items() if p.stage.name}
    index = int(name) if name.isdigit() else names.get(name.lower())
    if index is None:
        try:
            return ctx.sources.base_image(name)
        except DistillError as e:
            e.hint = "; ".join(filter(None, [e.hint, (
                f"COPY --from={name} comes from an ONBUILD trigger; there a stage name "
                "counts only for a stage this stage already depends on")]))
            raise e.at(inst.location) from None
    ancestors: set[int] = set()
    todo = [ctx.planned.stage.index]
    while todo:
        for dep in planned[todo.pop()].dependencies - ancestors:
            ancestors.add(dep)
            todo.append(dep)
    if index not in ancestors:
        raise DockerfileError(
            f"COPY --from={name} in an ONBUILD trigger needs stage {name!r}, which this stage "
            "does not otherwise depend on; distill does not support that yet",
            hint=f"add COPY --from={name} (or FROM {name}) to an earlier step of the chain, "
                 "or copy from an image",
            location=inst.location)
    return ctx.sources.stage_image(index)
