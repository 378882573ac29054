"""One handler per instruction. Each takes the stage state and returns a new one."""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import stat
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from distill.build import add as addsrc
from distill.build.copy import CopyOptions, copy_sources
from distill.build.runmounts import mounts_signature, prepare_mounts
from distill.build.sources import Source, resolve_sources
from distill.build.state import StageState
from distill.build.users import home_of, resolve_chown, resolve_user, supplementary_groups
from distill.dockerfile import instructions as ins
from distill.dockerfile.mounts import parse_mount
from distill.dockerfile.parser import chomp_heredoc_content, parse_heredoc
from distill.dockerfile.ports import parse_ports
from distill.dockerfile.shell import Lexer
from distill.errors import DistillError, DockerfileError, RunError
from distill.ignore import PatternMatcher
from distill.image.image import Image, Layer
from distill.oci import mediatypes as mt
from distill.oci.descriptor import Descriptor
from distill.oci.digest import Digest
from distill.plan.plan import PROXY_ARGS
from distill.sandbox import RunSpec, run_in_rootfs
from distill.sandbox.run import SandboxMount

if TYPE_CHECKING:
    from distill.build.builder import StageContext
    from distill.plan.plan import BuildPlan, PlannedStage


def _expand(ctx: StageContext, state: StageState, word: str) -> str:
    return ctx.lexer.process_word(word, state.expansion_env())


def _layer_step(ctx: StageContext, state: StageState, signature: list[object],
                created_by: str, work: Callable[[Path], None]) -> StageState:
    """Run ``work`` on a writable rootfs, turning its changes into a layer; cached by signature."""
    image = state.image
    key = hashlib.sha256(json.dumps(
        [[str(d) for d in image.config.diff_ids], signature, ctx.rootfs.mtime_clamp],
        sort_keys=True).encode()).hexdigest()
    layer: Layer | None = None
    hit = ctx.cache_lookup(key)
    if hit is not None:
        ctx.log("CACHED")
        layer = hit
    else:
        with ctx.rootfs.changes(image) as changes:
            work(changes.mount.merged)
        layer = changes.layer
        ctx.cache_store(key, layer)
    if layer is None:
        return state.with_image(image.add_history(created_by, empty_layer=True))
    return state.with_image(image.append_layer(layer, created_by))


def layer_to_cache(layer: Layer | None) -> dict[str, object]:
    if layer is None:
        return {"empty": True}
    return {"blob": layer.blob.to_dict(), "diff_id": str(layer.diff_id),
            "size": layer.uncompressed_size}


def layer_from_cache(value: dict[str, object]) -> Layer | None:
    if value.get("empty"):
        return None
    return Layer(Descriptor.from_dict(value["blob"]),  # type: ignore[arg-type]
                 Digest(str(value["diff_id"])), int(value["size"]))  # type: ignore[call-overload]


# -- RUN ---------------------------------------------------------------------------

# BuildKit mounts a heredoc script that starts with #! at /dev/pipes/<name>; distill's
# sandbox gives the command a fresh /dev (bubblewrap --dev) over any mount made there, so
# the script is mounted here instead (read-only, gone after the step; only $0 differs).
_PIPES = "/run/distill-pipes"


def _heredoc_command(inst: ins.Run) -> tuple[list[str], tuple[str, str] | None]:
    """The command of a RUN with heredocs, as BuildKit's dispatchRun makes it, and the
    script file (name, content) to mount at /dev/pipes, if any.

    ``RUN <<EOF`` (the command is only the heredoc): a body starting with ``#!`` is
    written to a read-only file (0755; BuildKit's /dev/pipes/EOF, here under ``_PIPES``)
    and run as a file; any other body is the shell's
    script. Otherwise the heredocs are put back after the command line, for the shell
    (which reads them itself: ``<<-``, fds and quoting are the shell's business). The
    body is never expanded here: the shell does that."""
    args = list(inst.command)
    if not inst.heredocs:
        return args, None
    if inst.json or len(args) != 1:
        raise DockerfileError(f"parsing produced an invalid run command: {args}",
                              location=inst.location)
    try:
        only = parse_heredoc(args[0])
    except DockerfileError as e:
        raise e.at(inst.location) from None
    if only is None:
        return [args[0] + "".join("\n" + d.content + d.name for d in inst.heredocs)], None
    first = inst.heredocs[0]
    data = chomp_heredoc_content(first.content) if first.chomp else first.content
    if first.content.startswith("#!"):
        return [posixpath.join(_PIPES, first.name)], (first.name, data)
    return [data], None


def run(ctx: StageContext, state: StageState, inst: ins.Run) -> StageState:
    command, script = _heredoc_command(inst)
    argv = command if inst.json else [*state.shell, command[0]]
    env = state.run_env()
    cwd = state.workdir
    user = state.runtime.user
    shown = " ".join(argv) if not inst.json else json.dumps(argv)
    signature: list[object] = ["run", argv, sorted(env.items()), user, cwd]
    mounts = [parse_mount(v, lambda word: _expand(ctx, state, word)) for v in inst.mounts]
    if mounts or inst.network != "default":  # keys of plain RUNs stay as they were
        signature += [inst.network, mounts_signature(mounts, ctx.context, cwd),
                      sorted({m.from_: [str(d) for d in
                                        ctx.mount_source_image(m.from_).config.diff_ids]
                              for m in mounts if m.type == "bind" and m.from_}.items())]
    if script is not None:
        signature += ["heredoc-script", list(script)]

    def work(root: Path) -> None:
        uid, gid = resolve_user(root, user) if user else (0, 0)
        run_env = env if "HOME" in env else {**env, "HOME": home_of(root, uid)}
        run_env = {**{k: v for k, v in ctx.build_args.items()
                      if k in PROXY_ARGS and k not in env}, **run_env}
        with prepare_mounts(mounts, store=ctx.rootfs.store, context=ctx.context,
                            stage_rootfs=ctx.mount_source, secrets=ctx.builder.secrets,
                            ssh=ctx.builder.ssh, workdir=cwd) as prepared, \
                tempfile.TemporaryDirectory(prefix="distill-heredoc-") as pipes:
            sandbox_mounts = tuple(prepared)
            if script is not None:
                os.chmod(pipes, 0o755)
                script_path = Path(pipes, script[0])
                script_path.write_text(script[1], encoding="utf-8", errors="surrogateescape")
                os.chmod(script_path, 0o755)
                sandbox_mounts = (SandboxMount("bind", _PIPES, Path(pipes), readonly=True),
                                  *sandbox_mounts)
            spec = RunSpec(argv=argv, env=prepared.environ(run_env), cwd=cwd, uid=uid,
                           gid=gid, groups=supplementary_groups(root, user),
                           network=inst.network, mounts=sandbox_mounts,
                           secret_env=prepared.secret_env)
            code = run_in_rootfs(root, spec, stdout=ctx.output)
        if code != 0:
            raise RunError(shown, code, location=inst.location)

    return _layer_step(ctx, state, signature, f"RUN {shown}", work)


# -- COPY ---------------------------------------------------------------------------

def _tree_hash(sources: list[Source], allow: Callable[[Path], bool] | None) -> str:
    """Content hash of everything a COPY would read (names, types, modes, owners, bytes)."""
    h = hashlib.sha256()

    def entry(path: str, rel: str) -> None:
        st = os.lstat(path)
        h.update(f"{rel}\0{st.st_mode}\0{st.st_uid}\0{st.st_gid}\0{st.st_mtime_ns}\0".encode())
        if stat.S_ISLNK(st.st_mode):
            h.update(os.readlink(path).encode())
        elif stat.S_ISREG(st.st_mode):
            with open(path, "rb") as f:
                while block := f.read(1 << 20):
                    h.update(block)

    for src in sources:
        entry(str(src.host), src.rel)
        if src.host.is_dir():
            for dirpath, dirnames, filenames in os.walk(src.host):
                if allow is not None:
                    dirnames[:] = [d for d in dirnames if allow(Path(dirpath, d))]
                    filenames = [f for f in filenames if allow(Path(dirpath, f))]
                dirnames.sort()
                for name in sorted(dirnames) + sorted(filenames):
                    p = os.path.join(dirpath, name)
                    entry(p, os.path.relpath(p, src.host))
    return h.hexdigest()


def _parse_chmod(inst: ins.Copy, value: str) -> int:
    try:
        mode = int(value, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o7777:
        raise DockerfileError(f"invalid --chmod={value}: only octal modes are supported",
                              location=inst.location)
    return mode


# BuildKit expands an unquoted heredoc's body with quotes left alone (ExpandRaw)
_HEREDOC_LEXER = Lexer("\\", skip_process_quotes=True)


def _split_pivot(pattern: str) -> tuple[str, str]:
    """--parents: ``a/./b/c`` copies b/c under DEST (BuildKit's ``/./`` pivot);
    without a pivot the path is kept from the root. Returns (pivot, pattern)."""
    parent, sep, rest = pattern.partition("/./")
    if not sep:
        return ".", pattern
    return os.path.normpath("/" + parent).lstrip("/") or ".", pattern


def _heredoc_sources(ctx: StageContext, state: StageState, inst: ins.Copy,
                     where: Path) -> list[Source]:
    """COPY <<EOF: each body becomes a file named after its delimiter (mode 0644)."""
    out = []
    env = state.expansion_env()
    for doc in inst.contents:
        name = doc.name
        if "/" in name or name in (".", ".."):
            raise DockerfileError(f"invalid heredoc name for COPY: {name!r}",
                                  location=inst.location)
        data = _HEREDOC_LEXER.process_word(doc.content, env) if doc.expand else doc.content
        host = where / name
        host.write_text(data, encoding="utf-8", errors="surrogateescape")
        os.chmod(host, 0o644)
        out.append(Source(name, host))
    return out


def copy(ctx: StageContext, state: StageState, inst: ins.Copy) -> StageState:
    patterns = [_expand(ctx, state, s) for s in inst.sources]
    excludes = [_expand(ctx, state, e) for e in inst.excludes]
    dest = _expand(ctx, state, inst.dest)
    if not dest:
        raise DockerfileError("COPY destination is empty", location=inst.location)
    if not posixpath.isabs(dest):
        trailing = dest.endswith("/") or dest in (".", "./")
        dest = posixpath.join(state.workdir, dest)
        dest = posixpath.normpath(dest) + ("/" if trailing else "")
    if len(patterns) + len(inst.contents) > 1 and not dest.endswith("/"):
        raise DockerfileError("when using COPY with more than one source file, the destination "
                              "must be a directory and end with a /", location=inst.location)
    chown = _expand(ctx, state, inst.chown) if inst.chown else None
    chmod = _parse_chmod(inst, _expand(ctx, state, inst.chmod)) if inst.chmod else None

    with ExitStack() as stack:
        allow: Callable[[Path], bool] | None = None
        if inst.from_ is None:
            root, what, escape = ctx.context.root, "the build context", True
            allow = ctx.context.allows if ctx.context.matcher is not None else None
        elif not isinstance(inst, TriggerCopy) and (local := ctx.copy_source_dir(inst)):
            root, what, escape = local, f"build context {inst.from_!r}", True
        else:
            image = inst.source if isinstance(inst, TriggerCopy) and inst.source else \
                ctx.copy_source_image(inst)
            root = stack.enter_context(ctx.rootfs.mounted(image)).merged
            what, escape = f"--from={inst.from_}", False
        sources: list[Source] = []
        adding = isinstance(inst, ins.Add)
        add_opts = addsrc.AddOptions(inst.checksum, inst.keep_git_dir, inst.unpack) \
            if isinstance(inst, ins.Add) else addsrc.AddOptions()
        remote: list[Source] = []     # downloads and git checkouts (outside the context)
        archives: list[Source] = []   # sources ADD unpacks into dest
        for pattern in patterns:
            if adding and (addsrc.is_git(pattern) or addsrc.is_url(pattern)):
                git = addsrc.is_git(pattern)
                tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="distill-add")))
                try:
                    got = stack.enter_context((addsrc.fetch_git if git else addsrc.fetch_url)(
                        pattern, tmp, add_opts))
                except DistillError as e:
                    raise e.at(inst.location) from None
                if not git and addsrc.wants_unpack(add_opts, True) and addsrc.is_archive(got):
                    archives.append(Source(pattern, got))
                else:
                    remote.append(Source(pattern if git else got.name, got))
                continue
            if adding and add_opts.checksum:
                raise DockerfileError("checksum can't be specified for non-HTTP(S) sources",
                                      location=inst.location)
            found = resolve_sources(root, [pattern], what, forbid_escape=escape, allow=allow)
            if adding and addsrc.wants_unpack(add_opts, False):
                archives += [s for s in found if addsrc.is_archive(s.host)]
                found = [s for s in found if not addsrc.is_archive(s.host)]
            if inst.parents:
                pivot, _ = _split_pivot(pattern)
                found = [replace(src, base=pivot) for src in found]
            sources += found
        try:
            exclude = PatternMatcher(excludes) if excludes else None
        except DistillError as e:
            raise e.at(inst.location) from None
        heredocs_dir = Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="distill-heredoc-")))
        inline = _heredoc_sources(ctx, state, inst, heredocs_dir)
        signature: list[object] = ["copy", [s.rel for s in sources], _tree_hash(sources, allow),
                                   dest, chown, chmod, escape]
        if inline or excludes or inst.parents:  # keys of plain COPYs stay as they were
            signature += [[[s.rel, s.host.read_bytes().hex()] for s in inline], excludes,
                          inst.parents, [s.base for s in sources]]
        if adding:
            signature += ["add", patterns, _tree_hash(remote, None), _tree_hash(archives, None),
                          add_opts.keep_git_dir, add_opts.unpack]
        dest_is_dir = dest.endswith("/") or len(sources) + len(inline) + len(remote) > 1

        def work(dest_root: Path) -> None:
            owner = resolve_chown(dest_root, chown) if chown else (
                (0, 0) if escape else None)  # local files are root's; a stage's keep theirs
            copy_sources(dest_root, sources, dest,
                         CopyOptions(owner=owner, mode=chmod, allow=allow, exclude=exclude,
                                     parents=inst.parents), dest_is_dir=dest_is_dir)
            if remote:  # not in the context: no .dockerignore filter
                copy_sources(dest_root, remote, dest, CopyOptions(owner=owner or (0, 0),
                                                                  mode=chmod),
                             dest_is_dir=dest_is_dir)
            for archive in archives:  # members keep their owners; --chown: created dirs only
                addsrc.extract_archive_into(archive.host, dest_root, dest,
                                            resolve_chown(dest_root, chown) if chown else None)
            if inline:  # inline files are root's (or --chown's), like BuildKit's Mkfile
                copy_sources(dest_root, inline, dest, CopyOptions(owner=owner or (0, 0),
                                                                  mode=chmod),
                             dest_is_dir=dest_is_dir)

        flags = "".join(f" --{k}={v}" for k, v in (("from", inst.from_), ("chown", chown),
                                                     ("chmod", inst.chmod)) if v)
        if inst.parents:
            flags = " --parents" + flags
        shown = " ".join([*patterns, *(f"<<{doc.name}" for doc in inst.contents)])
        verb = "ADD" if adding else "COPY"
        return _layer_step(ctx, state, signature, f"{verb}{flags} {shown} {dest}", work)


# -- configuration-only instructions ------------------------------------------------

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
    for raw_name, raw_value in inst.pairs:
        name = _expand(ctx, state, raw_name)
        value = _expand(ctx, state, raw_value)
        if not name:
            raise DockerfileError("ENV names can not be blank", location=inst.location)
        runtime = runtime.with_env(name, value)
        shown.append(f"{name}={value}")
    return state.with_runtime(runtime, "ENV " + " ".join(shown))


def label(ctx: StageContext, state: StageState, inst: ins.Label) -> StageState:
    labels = dict(state.runtime.labels)
    shown = []
    for raw_key, raw_value in inst.pairs:
        key, value = _expand(ctx, state, raw_key), _expand(ctx, state, raw_value)
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
    value = _expand(ctx, state, inst.user)
    return state.with_runtime(replace(state.runtime, user=value), f"USER {value}")


def workdir(ctx: StageContext, state: StageState, inst: ins.Workdir) -> StageState:
    path = _expand(ctx, state, inst.path)
    path = posixpath.normpath(posixpath.join(state.workdir, path))
    state = replace(state, image=state.image.with_runtime(replace(state.runtime, working_dir=path)))
    if path == "/":
        return state.with_image(state.image.add_history(f"WORKDIR {path}"))
    usr = state.runtime.user

    def work(root: Path) -> None:
        owner = resolve_user(root, usr) if usr else (0, 0)
        _mkdir_p(root, path, owner)

    return _layer_step(ctx, state, ["workdir", path, usr], f"WORKDIR {path}", work)


def _mkdir_p(root: Path, path: str, owner: tuple[int, int]) -> None:
    from distill.build.copy import CopyOptions, _Copier

    _Copier(root, CopyOptions(owner=owner)).ensure_dir(path, owner)


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
    value = _expand(ctx, state, inst.signal)
    check_signal(value)
    runtime = replace(state.runtime, stop_signal=value)
    return state.with_runtime(runtime, f"STOPSIGNAL {value}")


def volume(ctx: StageContext, state: StageState, inst: ins.Volume) -> StageState:
    added = [_expand(ctx, state, v) for v in inst.volumes]
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


# -- ONBUILD triggers -----------------------------------------------------------------

@dataclass(frozen=True)
class TriggerCopy(ins.Copy):
    """``COPY --from`` from an ONBUILD trigger: its source was resolved when the trigger
    was read (the plan knows only the stage's own instructions)."""

    source: Image | None = None


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
        inst = ins.parse_trigger(expr, where)
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
            return ctx.builder.base_image(name)
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
    return ctx.builder.stage_images[index]


def arg(ctx: StageContext, state: StageState, inst: ins.Arg) -> StageState:
    args = dict(state.args)
    for name, default in inst.pairs:
        if name in ctx.build_args:
            args[name] = ctx.build_args[name]
        elif default is not None:
            args[name] = _expand(ctx, replace(state, args=args), default)
        elif name in ctx.global_args:
            args[name] = ctx.global_args[name]
        elif name in ctx.platform_args:
            args[name] = ctx.platform_args[name]
        else:
            args.pop(name, None)
    return replace(state, args=args)


HANDLERS: dict[type, Callable[..., StageState]] = {
    ins.Run: run, ins.Copy: copy, ins.Cmd: cmd, ins.Entrypoint: entrypoint, ins.Env: env,
    ins.Label: label, ins.Expose: expose, ins.User: user, ins.Workdir: workdir, ins.Arg: arg,
    ins.Shell: shell, ins.StopSignal: stopsignal, ins.Volume: volume,
    ins.Maintainer: maintainer, ins.Healthcheck: healthcheck, ins.Onbuild: onbuild,
    TriggerCopy: copy,
    ins.Add: copy,
}


def scratch_image(platform: object) -> Image:
    from distill.oci.config import ImageConfig

    return Image(ImageConfig(platform=platform))  # type: ignore[arg-type]


__all__ = ["HANDLERS", "layer_from_cache", "layer_to_cache", "mt"]
