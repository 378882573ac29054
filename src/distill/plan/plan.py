"""The stage graph: which stages the target needs, in what order, from which bases.

Only stages reachable from the target are planned (a broken unused stage never
runs), and cycles are rejected before anything runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from distill.dockerfile.instructions import Arg, Copy, Dockerfile, Run, Stage
from distill.dockerfile.mounts import mount_from
from distill.dockerfile.shell import Lexer
from distill.errors import DockerfileError, ShellExpansionError, UsageError
from distill.oci.platform import Platform


@dataclass(frozen=True)
class StageBase:
    """Where a stage starts: another stage, scratch, or an image reference."""

    stage: int | None = None
    image: str | None = None       # None with stage None means scratch
    platform: Platform | None = None   # FROM --platform=…, expanded; None: the target's

    @property
    def is_scratch(self) -> bool:
        return self.stage is None and self.image is None


@dataclass(frozen=True)
class PlannedStage:
    stage: Stage
    base: StageBase
    copy_sources: Mapping[int, int | str] = field(default_factory=dict)  # instr index -> stage|image
    mount_sources: Mapping[str, int | str] = field(default_factory=dict)  # RUN --mount from=

    @property
    def dependencies(self) -> frozenset[int]:
        """Indexes of the stages this one needs (its base, COPY --from, RUN --mount from=)."""
        deps = {self.base.stage} if self.base.stage is not None else set()
        deps.update(v for v in self.copy_sources.values() if isinstance(v, int))
        deps.update(v for v in self.mount_sources.values() if isinstance(v, int))
        return frozenset(deps)


@dataclass(frozen=True)
class BuildPlan:
    order: tuple[PlannedStage, ...]     # dependencies first; the target is last
    target: int
    global_args: Mapping[str, str]      # declared global ARGs with values (for re-declaration)
    build_args: Mapping[str, str]
    platform: Platform
    unused_build_args: tuple[str, ...] = ()


# Predefined: usable in RUN without an ARG line, kept out of the image and the cache key.
#: the build arg BuildKit's frontend reads itself (image and file times): never "unused"
SOURCE_DATE_EPOCH = "SOURCE_DATE_EPOCH"

PROXY_ARGS = frozenset({"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY",
                        "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"})


def platform_args(target: Platform, build: Platform | None = None) -> dict[str, str]:
    build = build or Platform.host()
    out = {}
    for prefix, p in (("BUILD", build), ("TARGET", target)):
        out[prefix + "PLATFORM"] = str(p)
        out[prefix + "OS"] = p.os
        out[prefix + "ARCH"] = p.architecture
        out[prefix + "VARIANT"] = p.variant
    return out


def _expand(lex: Lexer, word: str, env: Mapping[str, str], where: Arg | Stage | Copy) -> str:
    try:
        return lex.process_word(word, env)
    except ShellExpansionError as e:
        loc = where.source.location if isinstance(where, Stage) else where.location
        raise e.at(loc) from None


def resolve_global_args(dockerfile: Dockerfile, build_args: Mapping[str, str],
                        lex: Lexer, platform: Platform) -> dict[str, str]:
    env = platform_args(platform)
    declared: dict[str, str] = {}
    for arg in dockerfile.global_args:
        for name, default in arg.pairs:
            if name in build_args:
                value = build_args[name]
            elif default is not None:
                value = _expand(lex, default, {**env, **declared}, arg)
            else:
                continue
            declared[name] = value
    return declared


def make_plan(dockerfile: Dockerfile, *, target: str | None = None,
              build_args: Mapping[str, str] | None = None,
              named_contexts: frozenset[str] = frozenset(),
              platform: Platform | None = None, lex: Lexer | None = None) -> BuildPlan:
    build_args = dict(build_args or {})
    lex = lex or Lexer()
    platform = platform or Platform.host()
    stages = dockerfile.stages
    by_name = {s.name: s.index for s in stages if s.name}
    global_args = resolve_global_args(dockerfile, build_args, lex, platform)
    from_env = {**platform_args(platform), **global_args}

    def stage_ref(word: str, before: int | None) -> int | None:
        key = word.lower()
        if key in by_name and key not in named_contexts:
            idx = by_name[key]
            if before is not None and idx >= before:
                return None
            return idx
        if word.isdigit() and key not in named_contexts:
            idx = int(word)
            if idx >= len(stages):
                return None
            return idx
        return None

    planned: dict[int, PlannedStage] = {}
    for stage in stages:
        image = _expand(lex, stage.source.image, from_env, stage)
        if not image:
            raise DockerfileError("FROM names an empty image (an ARG without a value?)",
                                  location=stage.source.location)
        ref = stage_ref(image, stage.index) if not image.isdigit() else None
        from_platform = None
        if stage.source.platform:
            text = _expand(lex, stage.source.platform, from_env, stage)
            try:
                from_platform = Platform.parse(text)
            except UsageError as e:
                raise DockerfileError(f"FROM --platform: {e.message}", hint=e.hint,
                                      location=stage.source.location) from None
        if ref is not None:
            base = StageBase(stage=ref, platform=from_platform)
        elif image.lower() == "scratch":
            base = StageBase(platform=from_platform)
        else:
            base = StageBase(image=image, platform=from_platform)
        copies: dict[int, int | str] = {}
        mount_sources: dict[str, int | str] = {}
        for i, inst in enumerate(stage.instructions):
            if isinstance(inst, Copy) and inst.from_:
                src = _expand(lex, inst.from_, from_env, inst)
                sref = stage_ref(src, None)
                if sref == stage.index:
                    raise DockerfileError(f"COPY --from={src} refers to its own stage",
                                          location=inst.location)
                copies[i] = sref if sref is not None else src
            if isinstance(inst, Run):
                for raw in inst.mounts:
                    mount_src = mount_from(raw)
                    if mount_src:
                        sref = stage_ref(mount_src, None)
                        if sref == stage.index:
                            raise DockerfileError(f"RUN --mount from={mount_src} refers to its "
                                                  "own stage", location=inst.location)
                        mount_sources[mount_src] = sref if sref is not None else mount_src
        planned[stage.index] = PlannedStage(stage, base, copies, mount_sources)

    if target is None:
        target_idx = stages[-1].index
    else:
        found = by_name.get(target.lower())
        if found is None:
            names = ", ".join(sorted(by_name)) or "(no named stages)"
            raise UsageError(f"target stage {target!r} could not be found", hint=f"stages: {names}")
        target_idx = found

    order: list[PlannedStage] = []
    state: dict[int, str] = {}

    def visit(idx: int, chain: list[int]) -> None:
        if state.get(idx) == "done":
            return
        if state.get(idx) == "active":
            names = " -> ".join(stages[i].name or str(i) for i in chain + [idx])
            raise DockerfileError(f"circular dependency between stages: {names}",
                                  location=stages[idx].source.location)
        state[idx] = "active"
        p = planned[idx]
        for dep in sorted(p.dependencies):
            visit(dep, chain + [idx])
        state[idx] = "done"
        order.append(p)

    visit(target_idx, [])
    declared = {n for a in dockerfile.global_args for n, _ in a.pairs}
    for p in order:
        for inst in p.stage.instructions:
            if isinstance(inst, Arg):
                declared.update(n for n, _ in inst.pairs)
    unused = tuple(sorted(set(build_args) - declared - PROXY_ARGS - {SOURCE_DATE_EPOCH}))
    return BuildPlan(tuple(order), target_idx, global_args, build_args, platform, unused)
