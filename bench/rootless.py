"""examples/go-hello, cold, in one run: distill as root, distill rootless (an ordinary user,
tests/rootless/run's), and buildah rootless (``buildah build`` as the same user).

Every builder starts from the same two bases, loaded into a fresh store of its own before
each run (not timed): Debian bookworm (mmdebstrap minbase) for the build stage and
distroless/static:nonroot for the final one; with no build cache, each builds the
Dockerfile to a tagged image. distill runs byte-compiled, as pip leaves it. Times are
wall-clock seconds; ratios are other / distill as root.

    .venv/bin/python bench/rootless.py [--runs N]      (as root: it makes the user)
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from buildah_storage import buildah_argv
from go_hello import DISTILL, DISTROLESS, EXAMPLE, REPO, Distill, sh, timed

USER = "distill-rootless"
TOP = Path("/opt/distill-rootless")           # tests/rootless/run --prepare makes it
DISTILL_RL = str(TOP / "venv/bin/distill")


def as_user(argv: list[str], **env: str) -> list[str]:
    """``argv`` run as the rootless user, with its home and ``env``."""
    home = pwd.getpwnam(USER).pw_dir
    settings = [f"{k}={v}" for k, v in {"HOME": home, "USER": USER, "LOGNAME": USER,
                                         "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **env}.items()]
    return ["setpriv", f"--reuid={USER}", f"--regid={USER}", "--init-groups",
            "env", "-i", *settings, *argv]


def user_dir(path: Path) -> Path:
    path.mkdir()
    user = pwd.getpwnam(USER)
    os.chown(path, user.pw_uid, user.pw_gid)
    return path


class DistillRoot:
    name = "distill (root)"

    def __init__(self, distill: Distill) -> None:
        self.distill = distill

    def cold(self, run: int, ctx: Path) -> float:
        root = self.distill.work / f"distill-root-{run}"
        sh(["cp", "-a", str(self.distill.layout_root), str(root)])
        return timed([DISTILL, "build", "--progress", "quiet", "--no-cache", "-t",
                      "go-hello:bench", str(ctx)], {"DISTILL_ROOT": str(root)})


class DistillRootless:
    name = "distill (rootless)"

    def __init__(self, work: Path, archives: list[Path]) -> None:
        self.work, self.archives = work, archives

    def cold(self, run: int, ctx: Path) -> float:
        root = str(user_dir(self.work / f"distill-rootless-{run}"))
        for archive in self.archives:
            sh(as_user([DISTILL_RL, "load", "-q", "-i", str(archive)], DISTILL_ROOT=root))
        return timed(as_user([DISTILL_RL, "build", "--progress", "quiet", "--no-cache", "-t",
                              "go-hello:bench", str(ctx)], DISTILL_ROOT=root))


class BuildahRootless:
    name = "buildah (rootless)"

    def __init__(self, work: Path, archives: list[Path]) -> None:
        self.work, self.archives = work, archives

    def cold(self, run: int, ctx: Path) -> float:
        home = user_dir(self.work / f"buildah-rootless-{run}")
        env = {"XDG_RUNTIME_DIR": str(home), "BUILDAH_ISOLATION": "chroot"}
        for archive, image in zip(self.archives, ("debian:bookworm", DISTROLESS), strict=True):
            pulled = subprocess.run(
                as_user(buildah_argv(home, "pull", "--quiet", f"oci-archive:{archive}"), **env),
                capture_output=True, text=True, check=True).stdout.split()[-1]
            sh(as_user(buildah_argv(home, "tag", pulled, f"localhost/{image}"), **env))
        return timed(as_user(buildah_argv(
            home, "build", "--isolation=chroot", "--pull=never", "--layers", "--no-cache",
            "--build-arg", "BASE=localhost/debian:bookworm", "-t", "go-hello:bench",
            str(ctx)), **env))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/rootless.py runs as root: it makes the rootless user")
    sh([str(REPO / "tests/rootless/run"), "--prepare"])
    # byte-compiled, as pip leaves an install (the user may not write the copy's caches)
    sh([str(TOP / "venv/bin/python"), "-m", "compileall", "-q", str(TOP / "repo/src")])
    sh([sys.executable, "-m", "compileall", "-q", str(REPO / "src" / "distill")])
    with tempfile.TemporaryDirectory(prefix="distill-bench-rl-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)
        distill = Distill(work)
        archives = []
        for image in ("debian:bookworm", DISTROLESS):
            archives.append(work / f"{image.split(':')[1]}.oci.tar")
            distill.export(image, f"type=oci,dest={archives[-1]}")
            os.chmod(archives[-1], 0o644)
        builders = [DistillRoot(distill), DistillRootless(work, archives),
                    BuildahRootless(work, archives)]
        times: dict[str, list[float]] = {}
        ctx = work / "go-hello"
        for run in range(args.runs):
            shutil.rmtree(ctx, ignore_errors=True)
            shutil.copytree(EXAMPLE, ctx)
            subprocess.run(["chmod", "-R", "a+rX", str(ctx)], check=True)
            time.sleep(2.1)  # the context older than the clock's granularity, as a checkout
            # the order rotates: the first to fetch from the Debian mirror is not always one
            for b in builders[run % len(builders):] + builders[:run % len(builders)]:
                seconds = b.cold(run, ctx)
                times.setdefault(b.name, []).append(seconds)
                print(f"cold  {b.name:20} {seconds:8.3f}s", flush=True)
    base = statistics.median(times[DistillRoot.name])
    print(f"\nexamples/go-hello, cold, medians of {args.runs} run(s)")
    for name, values in times.items():
        med = statistics.median(values)
        ratio = "" if name == DistillRoot.name else f"   {med / base:.2f}x distill-as-root's time"
        print(f"  {name:20} {med:8.3f}s{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
