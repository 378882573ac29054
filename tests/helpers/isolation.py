"""Shared by the isolation tests (tests/integration/test_isolation*.py): the escape probe,
the canary outside the build, builds through the CLI and what their RUNs answered.

The probe (``tests/integration/data/isolation_probe.c``, a static C program) attempts what
busybox cannot (packet and abstract unix sockets, ptrace, raw system calls) and prints one
``what: answer`` line per attempt: the kernel's error, or ``ok ...``.

The canary is a 0644 file in a 0755 directory under the system's temporary directory, so
that a RUN which did escape (as host uid 2^31, an unprivileged uid) could read it: pytest's
own temporary directories are 0700 and would hide an escape rather than catch it.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.helpers.progress import without_prefixes

SOURCE = Path(__file__).resolve().parents[1] / "integration" / "data" / "isolation_probe.c"
SECRET = "isolation-canary-5b7e21"
CANARY_TEXT = f"a host file\n{SECRET}\n"

RunDistill = Callable[..., subprocess.CompletedProcess[str]]


def compile_probe(where: Path) -> Path:
    """The probe, linked statically (it runs in a busybox image): ``where/probe``; or a
    copy of the one ``$DISTILL_TEST_PROBE`` names (where there is no compiler: the tests
    run inside a container by test_rootless_container.py)."""
    out = where / "probe"
    prebuilt = os.environ.get("DISTILL_TEST_PROBE")
    if prebuilt:
        shutil.copy(prebuilt, out)
        return out
    subprocess.run(["gcc", "-static", "-O2", "-o", str(out), str(SOURCE)], check=True)
    return out


@contextmanager
def canary_file() -> Iterator[Path]:
    """A 0644 file holding the secret, outside any build, in a directory anyone can
    traverse; removed afterwards."""
    where = Path(tempfile.mkdtemp(prefix="distill-isolation-canary-"))
    try:
        os.chmod(where, 0o755)
        path = where / "canary"
        path.write_text(CANARY_TEXT)
        os.chmod(path, 0o644)
        yield path
    finally:
        shutil.rmtree(where)


def context(tmp_path: Path, probe: Path, steps: str, base: str = "busybox:latest",
            name: str = "ctx") -> Path:
    """A context holding the probe; its Dockerfile: FROM base, COPY the probe, ``steps``."""
    ctx = tmp_path / name
    ctx.mkdir()
    shutil.copy2(probe, ctx / "probe")
    (ctx / "Dockerfile").write_text(f"FROM {base}\nCOPY probe /probe\n{steps}")
    return ctx


def build(distill: RunDistill, ctx: Path, *args: str,
          out: Path | None = None) -> subprocess.CompletedProcess[str]:
    output = ("--output", f"type=local,dest={out}") if out is not None else ()
    return distill("build", "--progress", "plain", *output, *args, str(ctx), check=False)


def output(proc: subprocess.CompletedProcess[str]) -> str:
    """What the build printed, its commands' lines without their step prefixes."""
    return without_prefixes(proc.stdout + proc.stderr)


def built(proc: subprocess.CompletedProcess[str]) -> str:
    """The output of a build that must succeed (its RUNs report what happened)."""
    assert proc.returncode == 0, output(proc)
    assert "Traceback" not in proc.stderr, proc.stderr
    return output(proc)


def answer(text: str, what: str) -> str:
    """The answer to the attempt ``what``: the last line ``what: answer`` of ``text``."""
    found = re.findall(rf"^{re.escape(what)}: (.*)$", without_prefixes(text), re.MULTILINE)
    assert found, f"no answer for {what!r} in:\n{text}"
    return str(found[-1])


def refused(text: str, *attempts: str) -> None:
    """Each attempt was made and failed (any error, or killed by a signal; never ``ok``)."""
    for what in attempts:
        said = answer(text, what)
        assert not said.startswith("ok"), f"{what}: {said}\n{text}"


def files_under(root: Path) -> Iterator[Path]:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath, name)
            if path.is_file() and not path.is_symlink():
                yield path


def assert_secret_nowhere(text: str, *trees: Path) -> None:
    """The secret is not in ``text`` nor in any file under ``trees`` (that exist)."""
    assert SECRET not in text, f"the secret leaked into the output:\n{text}"
    for tree in trees:
        for path in files_under(tree):
            assert SECRET.encode() not in path.read_bytes(), f"the secret leaked into {path}"


def assert_untouched(canary: Path, proc: subprocess.CompletedProcess[str],
                     *trees: Path) -> None:
    """The canary holds what it held, nothing was added beside it, and its secret is in
    no output and no image."""
    st = os.lstat(canary)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o644
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())  # the test's own
    assert canary.read_text() == CANARY_TEXT
    assert sorted(os.listdir(canary.parent)) == ["canary"]
    assert_secret_nowhere(output(proc), *trees)


def climb(path: Path) -> str:
    """``path`` relative to any working directory at most 16 levels deep."""
    return "../" * 16 + str(path).lstrip("/")


def escape_attempt(canary: Path) -> str:
    """A RUN that, started outside the sandbox, would read the canary and append to it
    (and list the host's root)."""
    rel = climb(canary)
    return (f"RUN pwd; cat {rel}; echo pwned >> {rel}; echo pwned > {rel}.new; "
            f"cat {canary}; ls -la {'../' * 16}; true\n")


def assert_refused_or_harmless(proc: subprocess.CompletedProcess[str], canary: Path,
                               out: Path, mount: str | tuple[str, ...]) -> None:
    """Finding 1: a clean distill error naming ``mount`` (/proc or /dev; or any of several),
    or a RUN that ran inside the sandbox; either way the canary is untouched and unread."""
    names = (mount,) if isinstance(mount, str) else mount
    if proc.returncode != 0:
        assert proc.returncode == 1, output(proc)   # a DistillError, not a crash
        assert "Traceback" not in proc.stderr, proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert errors and "working directory" in errors[-1] and \
            any(name in errors[-1] for name in names), \
            proc.stderr
    assert_untouched(canary, proc, *([out] if out.exists() else []))
