"""One handler per instruction (a table lookup, :data:`HANDLERS`); RUN lives here, the
others in configsteps and copystep (what a child stage runs of its parent's ONBUILD:
triggers). Each takes the stage state and returns a new one."""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from distill import phases
from distill.builder.configsteps import (
    arg,
    cmd,
    entrypoint,
    env,
    expose,
    healthcheck,
    label,
    maintainer,
    onbuild,
    shell,
    stopsignal,
    user,
    volume,
    workdir,
)
from distill.builder.copystep import TriggerCopy, copy, heredoc_file_name
from distill.builder.layerstep import (
    expand,
    layer_step,
    operation,
)
from distill.builder.runmounts import mounts_inputs, mounts_record, prepare_mounts
from distill.builder.state import StageState
from distill.builder.users import home_of, resolve_user, supplementary_groups
from distill.confine import resolve_in_root
from distill.dockerfile import instructions as ins
from distill.dockerfile.kernel import check_process
from distill.dockerfile.mounts import parse_mount
from distill.dockerfile.parser import chomp_heredoc_content, parse_heredoc
from distill.errors import DockerfileError, RunError
from distill.sandbox import RunSpec, run_in_rootfs
from distill.sandbox.run import SandboxMount

if TYPE_CHECKING:
    from distill.builder.stage_context import StageContext


# -- RUN ---------------------------------------------------------------------------

# BuildKit mounts a heredoc script that starts with #! at /dev/pipes/<name>; distill's
# sandbox gives the command a fresh /dev (bubblewrap --dev) over any mount made there, so
# the script is mounted here instead (read-only, gone after the step; only $0 differs).
# On the host the script is distill's own file, ``_SCRIPT`` in a private temporary
# directory: the delimiter names the script only inside the container.
_PIPES = "/run/distill-pipes"
_SCRIPT = "script"

# runc creates a container's /dev, /proc and /sys mount points in its root filesystem, and
# BuildKit keeps them in the RUN's layer (its stub cleaner covers only /etc/hosts,
# /etc/resolv.conf and RUN --mount targets): a RUN on a base without them leaves empty
# 0755 directories, so distill's does too (its sandbox itself leaves no stubs behind).
RUNC_MOUNT_POINTS = ("/dev", "/proc", "/sys")


def proxy_env(build_args: Mapping[str, str]) -> dict[str, str]:
    """The proxy variables a RUN gets from --build-arg without an ARG line, as BuildKit
    gives them: each of http_proxy, https_proxy, ftp_proxy, no_proxy and all_proxy given
    in any case (the last in sorted order wins; proxyEnvFromBuildArgs) is set under both
    its upper- and lower-case name when not empty (llbsolver's proxyEnvList)."""
    values: dict[str, str] = {}
    for key in sorted(build_args):
        if key.lower() in _PROXY_NAMES:
            values[key.lower()] = build_args[key]
    out = {}
    for name in _PROXY_NAMES:     # BuildKit's order: HTTP, HTTPS, FTP, NO, ALL
        if values.get(name):
            out[name.upper()] = out[name] = values[name]
    return out


_PROXY_NAMES = ("http_proxy", "https_proxy", "ftp_proxy", "no_proxy", "all_proxy")


def heredoc_command(inst: ins.Run) -> tuple[list[str], tuple[str, str] | None]:
    """The command of a RUN with heredocs, as BuildKit's dispatchRun makes it, and the
    script file (name, content) to mount at /dev/pipes, if any.

    ``RUN <<EOF`` (the command is only the heredoc): a body starting with ``#!`` is
    written to a read-only file (0755; BuildKit's /dev/pipes/EOF, here under ``_PIPES``)
    and run as a file; any other body is the shell's
    script. Otherwise the heredocs are put back after the command line, for the shell
    (which reads them itself: ``<<-``, fds and quoting are the shell's business). The
    body is never expanded here: the shell does that.

    The script's name is the delimiter cleaned from '/', as BuildKit's Mkfile makes it
    (``<</x`` runs /dev/pipes/x there); a delimiter that names no single file (``<<a/b``,
    ``<<..``) is an error, as it is in BuildKit; ``<<../x`` runs the script as ``x``
    (BuildKit makes the file x but runs /x of the root filesystem)."""
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
        name = heredoc_file_name(first.name, inst, "a RUN script", "a heredoc that starts "
                                 "with #! runs as a file named after its delimiter")
        return [posixpath.join(_PIPES, name)], (name, data)
    return [data], None


def _missing_program_hint(root: Path, argv: list[str], code: int, exec_form: bool) -> str | None:
    """Why a RUN exited 127 when the program it names is not in the image at all: most
    often a shell-form RUN on a base with no /bin/sh (distroless)."""
    program = argv[0]
    if code != 127 or not program.startswith("/") or \
            os.path.lexists(resolve_in_root(root, program)):
        return None
    if exec_form:
        return f"{program} is not in the image"
    return (f"the image has no {program} (a distroless base has no shell): use the exec "
            'form, RUN ["/path/to/program", "arg"], or on a :debug base '
            'SHELL ["/busybox/sh", "-c"]')


#: Below this much free space, a failed RUN may well have failed for want of it.
_LOW_SPACE = 64 << 20


def _low_space_hint(store_root: Path) -> str | None:
    """A RUN writes into the store (its upper directory): when the store's filesystem is
    (nearly) full, the program's own error ("I/O error", "No space left") is the cause."""
    try:
        st = os.statvfs(store_root)
    except OSError:
        return None
    free = st.f_bavail * st.f_frsize
    if free >= _LOW_SPACE:
        return None
    return (f"the filesystem holding distill's store ({store_root}) has only "
            f"{free // 1024} KiB free, and a RUN writes there: free space (df -h), or "
            "'distill prune'")


def run(ctx: StageContext, state: StageState, inst: ins.Run) -> StageState:
    command, script = heredoc_command(inst)
    argv = command if inst.json else [*state.shell, command[0]]
    env = state.run_env()
    cwd = state.workdir
    user = state.runtime.user
    shown = " ".join(argv) if not inst.json else json.dumps(argv)
    mounts = [parse_mount(v, lambda word: expand(ctx, state, word)) for v in inst.mounts]
    if inst.network == "host" and "network.host" not in ctx.allow:
        raise DockerfileError("RUN --network=host needs the network.host entitlement",
                              hint="pass --allow network.host (as with docker buildx build) "
                                   "to let this RUN share the host's network",
                              location=inst.location)
    # the proxy variables a RUN gets from --build-arg are left out, as BuildKit leaves
    # them out of its cache keys: a build behind another proxy is the same build
    op = operation(ctx, state, inst, expanded={
        "argv": argv, "env": sorted(env.items()), "user": user, "cwd": cwd,
        "mounts": mounts_record(mounts, cwd), "script": script,
    }, inputs={
        "mounts": mounts_inputs(mounts, ctx.context, ctx.hashes),
        "mount_images": sorted({m.from_: [str(d) for d in
                                          ctx.mount_source_image(m.from_).config.diff_ids]
                                for m in mounts if m.type == "bind" and m.from_}.items()),
    })

    def work(root: Path) -> None:
        uid, gid = resolve_user(root, user) if user else (0, 0)
        run_env = env if "HOME" in env else {**env, "HOME": home_of(root, uid)}
        run_env = {**{k: v for k, v in proxy_env(ctx.build_args).items() if k not in env},
                   **run_env}
        with prepare_mounts(mounts, store=ctx.rootfs.store, context=ctx.context,
                            stage_rootfs=ctx.mount_source, secrets=ctx.secrets,
                            ssh=ctx.ssh, workdir=cwd) as prepared, \
                ctx.rootfs.store.blobs.temp_dir("heredoc-") as pipes:
            sandbox_mounts = tuple(prepared)
            if script is not None:
                script_path = Path(pipes, _SCRIPT)
                fd = os.open(script_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL |
                             os.O_NOFOLLOW | os.O_CLOEXEC, 0o755)
                with os.fdopen(fd, "wb") as f:
                    f.write(script[1].encode("utf-8", "surrogateescape"))
                os.chmod(script_path, 0o755)
                sandbox_mounts = (SandboxMount("bind", posixpath.join(_PIPES, script[0]),
                                               script_path, readonly=True),
                                  *sandbox_mounts)
            spec = RunSpec(argv=argv, env=prepared.environ(run_env), cwd=cwd, uid=uid,
                           gid=gid, groups=supplementary_groups(root, user),
                           network=inst.network, mounts=sandbox_mounts,
                           secret_env=prepared.secret_env, keep_dirs=RUNC_MOUNT_POINTS)
            check_process(spec.argv, {**spec.env, **spec.secret_env}, spec.cwd)
            phases.enter("run")
            code = run_in_rootfs(root, spec, stdout=ctx.steps.output, idmapped=True,
                                 group=ctx.processes)
        if code != 0:
            raise RunError(shown, code, location=inst.location,
                           hint=_missing_program_hint(root, argv, code, inst.json)
                           or _low_space_hint(ctx.rootfs.store.root))

    return layer_step(ctx, state, op, f"RUN {shown}", work, sandbox=True)




HANDLERS: dict[type, Callable[..., StageState]] = {
    ins.Run: run, ins.Copy: copy, ins.Cmd: cmd, ins.Entrypoint: entrypoint, ins.Env: env,
    ins.Label: label, ins.Expose: expose, ins.User: user, ins.Workdir: workdir, ins.Arg: arg,
    ins.Shell: shell, ins.StopSignal: stopsignal, ins.Volume: volume,
    ins.Maintainer: maintainer, ins.Healthcheck: healthcheck, ins.Onbuild: onbuild,
    TriggerCopy: copy,
    ins.Add: copy,
}


