"""Build one case with distill and with a reference builder, unpack both, and compare them."""

from __future__ import annotations

import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.differential.cases import CONTEXT_MTIME, Case
from tests.differential.deliberate import apply_deliberate
from tests.differential.references import REF, Inputs, Reference, ReferenceFailed
from tests.helpers.compare import ImageSnapshot, compare, format_report, snapshot_image
from tests.helpers.httpserve import serve_directory
from tests.helpers.readback import ToolError

# Every store the suite builds with (distill's, buildah's, dockerd's) is new in this test
# session, so a time before it came from a base image or a build context: a builder must
# keep it. A time after it is a build's clock (distill may reuse a layer it built for an
# earlier reference builder, so the start of one runner is not enough).
SESSION_STARTED = time.time()


@dataclass
class Outcome:
    case: Case
    ok: bool
    report: str
    seconds: float
    deliberate: tuple[str, ...] = ()
    snapshots: tuple[ImageSnapshot, ImageSnapshot] | None = None   # (distill, reference)


def prepare_context(case: Case, dest: Path) -> Path:
    """Copy the case directory to ``dest`` with normalized modes, owners and mtimes (the
    owner rootless is the user: root of both builders' namespaces)."""
    shutil.copytree(case.dir, dest, symlinks=True)
    owner = (os.getuid(), os.getgid())
    for dirpath, dirnames, filenames in os.walk(dest):
        os.chmod(dirpath, 0o755)
        os.lchown(dirpath, *owner)
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, 0o644)
            os.lchown(path, *owner)
    if case.setup is not None:
        case.setup(dest)
    for dirpath, dirnames, filenames in os.walk(dest):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), (CONTEXT_MTIME, CONTEXT_MTIME),
                     follow_symlinks=False)
    os.utime(dest, (CONTEXT_MTIME, CONTEXT_MTIME))
    return dest


class DifferentialRunner:
    """Runs cases in ``workdir``; ``distill`` is the conftest CLI runner."""

    def __init__(self, distill: Any, reference: Reference, workdir: Path,
                 ssh_socket: Path | None = None) -> None:
        self.distill = distill
        self.reference = reference
        self.ssh_socket = ssh_socket
        self.workdir = workdir
        self.started = SESSION_STARTED
        self.outcomes: dict[str, Outcome] = {}

    def outcome(self, case: Case) -> Outcome:
        if case.name not in self.outcomes:
            self.outcomes[case.name] = self._run(case)
        return self.outcomes[case.name]

    def _build_distill(self, case: Case, ctx: Path, inputs: Inputs, out: Path) -> str | None:
        args = ["build", "--progress", "plain", "-f", str(ctx / "Dockerfile"),
                "--output", f"type=oci,dest={out},tar=false",
                "-t", f"differential-{case.name.replace('_', '-')}:{REF}", *inputs.flags(),
                "--allow", "network.host"]  # as `docker build --network host` grants it
        if case.target:
            args += ["--target", case.target]
        proc = self.distill(*args, str(ctx), check=False)
        if proc.returncode != 0:
            return f"distill build failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}"
        return None

    def _build_reference(self, case: Case, ctx: Path, inputs: Inputs,
                         out: Path) -> str | None:
        try:
            self.reference.build_oci(case, ctx, inputs, out)
        except ReferenceFailed as e:
            return f"{self.reference.name} build failed: {e}"
        return None

    def _run(self, case: Case) -> Outcome:
        started = time.monotonic()
        base = self.workdir / case.name
        if base.exists():
            shutil.rmtree(base)
        base.mkdir(parents=True)
        ctx = prepare_context(case, base / "context")
        name = self.reference.name
        d_out, b_out = base / "distill.oci", base / f"{name}.oci"
        if case.ssh and self.ssh_socket is None:
            raise AssertionError(f"case {case.name} needs the runner's ssh agent")
        with ExitStack() as stack:
            build_args = dict(case.build_args)
            if case.http:
                build_args["HTTP_BASE"] = stack.enter_context(serve_directory(ctx / "http"))
            inputs = Inputs(build_args, {k: ctx / v for k, v in case.secrets.items()},
                            self.ssh_socket if case.ssh else None)
            with ThreadPoolExecutor(2) as pool:
                d_err = pool.submit(self._build_distill, case, ctx, inputs, d_out)
                b_err = pool.submit(self._build_reference, case, ctx, inputs, b_out)
                errors = [e for e in (d_err.result(), b_err.result()) if e]
        title = f"differential case {case.name!r} (distill vs {name})"
        if errors:
            return Outcome(case, False, title + ":\n" + "\n".join(errors),
                           time.monotonic() - started)
        try:
            ours = snapshot_image(d_out, REF, base / "unpacked-distill")
            theirs = snapshot_image(b_out, REF, base / f"unpacked-{name}",
                                    self.reference.raw_config(b_out))
        except ToolError as e:
            return Outcome(case, False, f"{title}: reading an output failed: {e}",
                           time.monotonic() - started)
        try:
            applied = apply_deliberate(ours, theirs, case.expect, name)
        except KeyError as e:
            return Outcome(case, False, f"{title}: a case expectation names {e}, which is "
                           "missing", time.monotonic() - started)
        lines = compare(ours, theirs, pinned_before=self.started, names=("distill", name))
        shutil.rmtree(base / "unpacked-distill", ignore_errors=True)
        shutil.rmtree(base / f"unpacked-{name}", ignore_errors=True)
        return Outcome(case, not lines, format_report(title, lines, applied, name),
                       time.monotonic() - started, tuple(applied), (ours, theirs))
