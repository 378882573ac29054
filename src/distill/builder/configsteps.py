"""Instructions that change only the image config, plus ARG, and WORKDIR (which also
makes its directory, as a layer)."""

from __future__ import annotations

import json
import posixpath
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from distill.builder.layerstep import expand, layer_step, operation
from distill.builder.state import StageState
from distill.builder.users import resolve_user
from distill.confine import make_dirs
from distill.dockerfile import instructions as ins
from distill.dockerfile.kernel import check_owner, check_path
from distill.dockerfile.ports import parse_ports
from distill.errors import ContextError, DockerfileError
from distill.image.image import Image

if TYPE_CHECKING:
    from distill.builder.stage_context import StageContext


def _exec_form(state: StageState, command: tuple[str, ...], json_form: bool) -> tuple[str, ...]:
    return tuple(command) if json_form else (*state.shell, command[0])


def cmd(ctx: StageContext, state: StageState, inst: ins.Cmd) -> StageState:
    value = _exec_form(state, inst.command, inst.json)
    new = state.with_runtime(replace(state.runtime, cmd=value), f"CMD {json.dumps(list(value))}")
    return replace(new, cmd_set=True)


def entrypoint(ctx: StageContext, state: StageState, inst: ins.Entrypoint) -> StageState:
    value = _exec_form(state, inst.command, inst.json)
    runtime = replace(state.runtime, entrypoint=value)
    if not state.cmd_set:
        runtime = replace(runtime, cmd=None)
    return state.with_runtime(runtime, f"ENTRYPOINT {json.dumps(list(value))}")


def env(ctx: StageContext, state: StageState, inst: ins.Env) -> StageState:
    runtime = state.runtime
    shown = []
    names: set[str] = set()
    for raw_name, raw_value in inst.pairs:
        name = expand(ctx, state, raw_name)
        value = expand(ctx, state, raw_value)
        if not name:
            raise DockerfileError("ENV names can not be blank", location=inst.location)
        runtime = runtime.with_env(name, value)
        shown.append(f"{name}={value}")
        names.add(name)
    # this ENV now overrides an earlier ARG of the same name (see StageState.expansion_env)
    args = {k: v for k, v in state.args.items() if k not in names}
    return replace(state.with_runtime(runtime, "ENV " + " ".join(shown)), args=args)


def label(ctx: StageContext, state: StageState, inst: ins.Label) -> StageState:
    labels = dict(state.runtime.labels)
    shown = []
    for raw_key, raw_value in inst.pairs:
        key, value = expand(ctx, state, raw_key), expand(ctx, state, raw_value)
        labels[key] = value
        shown.append(f"{key}={value}")
    runtime = replace(state.runtime, labels=tuple(sorted(labels.items())))
    return state.with_runtime(runtime, "LABEL " + " ".join(shown))


def expose(ctx: StageContext, state: StageState, inst: ins.Expose) -> StageState:
    ports = set(state.runtime.exposed_ports)
    words = [w for raw in inst.ports for w in ctx.lexer.process_words(raw, state.expansion_env())]
    added = parse_ports(words)
    ports.update(added)
    runtime = replace(state.runtime, exposed_ports=tuple(sorted(ports)))
    return state.with_runtime(runtime, "EXPOSE " + " ".join(words))


def user(ctx: StageContext, state: StageState, inst: ins.User) -> StageState:
    value = expand(ctx, state, inst.user)
    return state.with_runtime(replace(state.runtime, user=value), f"USER {value}")


def workdir(ctx: StageContext, state: StageState, inst: ins.Workdir) -> StageState:
    path = expand(ctx, state, inst.path)
    # a path no file system can hold fails here, as BuildKit's mkdir fails on it
    path = check_path(posixpath.normpath(posixpath.join(state.workdir, path)), "WORKDIR")
    state = replace(state, image=state.image.with_runtime(replace(state.runtime, working_dir=path)))
    if path == "/":
        return state.with_image(state.image.add_history(f"WORKDIR {path}"))
    usr = state.runtime.user

    def work(root: Path) -> None:
        owner = resolve_user(root, usr) if usr else (0, 0)
        _mkdir_p(root, path, owner)

    op = operation(ctx, state, inst, expanded={"path": path, "user": usr})
    return layer_step(ctx, state, op, f"WORKDIR {path}", work)


def _mkdir_p(root: Path, path: str, owner: tuple[int, int]) -> None:
    check_owner(owner)      # USER's ids: ones chown(2) can set, or a clear error
    try:
        make_dirs(root, path, owner=owner)
    except NotADirectoryError as e:
        raise ContextError(f"cannot create the working directory {path}: {e.filename} "
                           "is not a directory") from None


def shell(ctx: StageContext, state: StageState, inst: ins.Shell) -> StageState:
    """Never expanded; later shell-form RUN/CMD/ENTRYPOINT use it, and the image keeps it."""
    runtime = replace(state.runtime, shell=inst.shell)
    return state.with_runtime(runtime, f"SHELL [{' '.join(inst.shell)}]")


# moby/sys/signal's Linux SignalMap: what STOPSIGNAL accepts by name (with or without SIG).
_SIGNALS = frozenset([
    "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
    "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
    "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
    "RTMIN", "RTMAX", *(f"RTMIN+{i}" for i in range(1, 16)), *(f"RTMAX-{i}" for i in range(1, 15))])


def check_signal(raw: str) -> None:
    """moby/sys/signal.ParseSignal: a non-zero integer, or a known name (any case)."""
    body = raw[1:] if raw[:1] in "+-" else raw
    # Go's strconv.Atoi (64-bit): digits with an optional sign; out of range is no number
    if body and all("0" <= c <= "9" for c in body) and -(1 << 63) <= int(raw) < (1 << 63):
        if int(raw) == 0:
            raise DockerfileError(f"invalid signal: {raw}")
        return
    name = raw.upper().removeprefix("SIG")
    if name not in _SIGNALS:
        raise DockerfileError(f"invalid signal: {raw}",
                              hint="e.g. STOPSIGNAL SIGTERM, STOPSIGNAL SIGRTMIN+3 or "
                                   "STOPSIGNAL 9")


def stopsignal(ctx: StageContext, state: StageState, inst: ins.StopSignal) -> StageState:
    value = expand(ctx, state, inst.signal)
    check_signal(value)
    runtime = replace(state.runtime, stop_signal=value)
    return state.with_runtime(runtime, f"STOPSIGNAL {value}")


def volume(ctx: StageContext, state: StageState, inst: ins.Volume) -> StageState:
    added = [expand(ctx, state, v) for v in inst.volumes]
    if "" in added:
        raise DockerfileError("VOLUME specified can not be an empty string",
                              location=inst.location)
    volumes = tuple(sorted({*state.runtime.volumes, *added}))
    return state.with_runtime(replace(state.runtime, volumes=volumes),
                              f"VOLUME [{' '.join(added)}]")


def maintainer(ctx: StageContext, state: StageState, inst: ins.Maintainer) -> StageState:
    image = state.image
    image = Image(replace(image.config, author=inst.maintainer), image.layers)
    return state.with_image(image.add_history(f"MAINTAINER {inst.maintainer}"))


def healthcheck(ctx: StageContext, state: StageState, inst: ins.Healthcheck) -> StageState:
    runtime = replace(state.runtime, healthcheck=inst.config())
    return state.with_runtime(runtime, inst.history())


def onbuild(ctx: StageContext, state: StageState, inst: ins.Onbuild) -> StageState:
    """Kept for images built on this one; BuildKit writes no history entry for it."""
    runtime = replace(state.runtime, on_build=(*state.runtime.on_build, inst.expression))
    return state.with_image(state.image.with_runtime(runtime))



def arg(ctx: StageContext, state: StageState, inst: ins.Arg) -> StageState:
    """BuildKit's dispatchArg: the value is the --build-arg, else the default, else the
    global ARG's (platform ARGs included); it overrides an ENV of the same name from here
    on. With none of them the variable keeps what it had (an earlier ARG's value, an ENV)."""
    args = dict(state.args)
    for name, default in inst.pairs:
        if name in ctx.build_args:
            args[name] = ctx.build_args[name]
        elif default is not None:
            args[name] = expand(ctx, replace(state, args=args), default)
        elif name in ctx.global_args:
            args[name] = ctx.global_args[name]
        elif name in ctx.platform_args:
            args[name] = ctx.platform_args[name]
    return replace(state, args=args)
