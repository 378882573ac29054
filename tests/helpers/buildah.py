"""buildah as a reference builder, in a private store that never touches the machine's own.

Every call runs ``buildah`` with its own ``--root``/``--runroot`` and storage driver
(``overlay`` by default: like BuildKit, a layer is the overlay upper directory, so a hardlink
made by RUN to a file of a lower layer stays a hardlink; ``vfs`` computes layers by comparing
trees and turns such a link into a second copy), its own ``registries.conf`` (no search
registries, so a
short name such as ``busybox`` can only resolve to an image already in the private store),
its own signature policy, and ``--isolation=chroot`` for RUN. Nothing reaches a network:
bases come from OCI layouts on disk (``load_oci``) and builds run with ``--pull=never``.

    b = Buildah(tmp / "buildah")
    b.load_oci(layout_dir, "latest", "busybox:latest")   # now `FROM busybox` resolves
    b.build(context, dockerfile, "localhost/case:latest", build_args={"A": "1"})
    b.push_oci("localhost/case:latest", out_dir, "latest")   # an OCI layout to compare
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

_POLICY = '{"default": [{"type": "insecureAcceptAnything"}]}\n'
_REGISTRIES = 'unqualified-search-registries = []\nshort-name-mode = "permissive"\n'


class BuildahError(RuntimeError):
    """buildah exited non-zero; the message holds the command line and its output."""


def have_buildah() -> bool:
    return shutil.which("buildah") is not None


class Buildah:
    """buildah confined to the directory ``home`` (created if needed)."""

    def __init__(self, home: Path, driver: str = "overlay") -> None:
        self.home = Path(home)
        self.driver = driver
        self.root = self.home / "root"
        self.runroot = self.home / "run"
        for d in (self.root, self.runroot):
            d.mkdir(parents=True, exist_ok=True)
        self.policy = self.home / "policy.json"
        self.policy.write_text(_POLICY)
        self.registries = self.home / "registries.conf"
        self.registries.write_text(_REGISTRIES)
        self.registries_d = self.home / "registries.conf.d"   # no short-name aliases
        self.registries_d.mkdir(exist_ok=True)
        containers_conf = self.home / "containers.conf"       # built-in defaults only
        containers_conf.write_text("")
        storage = self.home / "storage.conf"
        storage.write_text(f'[storage]\ndriver = "{driver}"\ngraphroot = "{self.root}"\n'
                           f'runroot = "{self.runroot}"\n')
        auth = self.home / "auth.json"                       # no credentials at all
        auth.write_text('{"auths": {}}\n')
        self.env = {
            **os.environ,
            "CONTAINERS_REGISTRIES_CONF": str(self.registries),
            "CONTAINERS_STORAGE_CONF": str(storage),
            "CONTAINERS_CONF": str(containers_conf),
            "REGISTRY_AUTH_FILE": str(auth),
            "BUILDAH_ISOLATION": "chroot",
            "TMPDIR": str(self._tmp()),
        }

    def _tmp(self) -> Path:
        tmp = self.home / "tmp"
        tmp.mkdir(exist_ok=True)
        return tmp

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``buildah --root ... --runroot ... --storage-driver DRIVER ARGS``."""
        argv = ["buildah", "--root", str(self.root), "--runroot", str(self.runroot),
                "--storage-driver", self.driver, "--registries-conf", str(self.registries),
                "--registries-conf-dir", str(self.registries_d), *args]
        proc = subprocess.run(argv, capture_output=True, text=True, env=self.env,
                              stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise BuildahError(f"{' '.join(argv)} exited {proc.returncode}:\n"
                               f"{proc.stdout}\n{proc.stderr}")
        return proc

    def load_oci(self, layout_dir: Path, ref: str, name: str) -> str:
        """Pull ``oci:LAYOUT:REF`` into the private store and tag it ``localhost/NAME``.

        Returns the image id. After this, ``FROM NAME`` resolves locally under
        ``--pull=never`` (short names are looked up as ``localhost/NAME`` first).
        """
        image_id = self.run("pull", "--quiet", "--signature-policy", str(self.policy),
                            f"oci:{layout_dir}:{ref}").stdout.strip().splitlines()[-1]
        self.run("tag", image_id, f"localhost/{name}")
        return image_id

    def build(self, context: Path, dockerfile: Path, tag: str, *,
              build_args: Mapping[str, str] | None = None, target: str | None = None,
              extra: Sequence[str] = (), check: bool = True) -> subprocess.CompletedProcess[str]:
        """``buildah build`` (= bud) with chroot isolation and no pulls; tags the result.

        ``--identity-label=false`` keeps buildah's ``io.buildah.version`` label out of the
        config, so Labels compare as written in the Dockerfile.
        """
        argv = ["build", "--isolation=chroot", "--pull=never", "--format", "oci",
                "--signature-policy", str(self.policy), "--identity-label=false",
                "-f", str(dockerfile), "-t", tag]
        for key, value in (build_args or {}).items():
            argv += ["--build-arg", f"{key}={value}"]
        if target:
            argv += ["--target", target]
        return self.run(*argv, *extra, str(context), check=check)

    def push_oci(self, image: str, layout_dir: Path, ref: str) -> None:
        """Write ``image`` as ``oci:LAYOUT:REF`` (an OCI image layout directory)."""
        self.run("push", "--quiet", "--signature-policy", str(self.policy), image,
                 f"oci:{layout_dir}:{ref}")

    def remove_image(self, image: str) -> None:
        self.run("rmi", "--force", image, check=False)

    def cleanup(self) -> None:
        """Remove working containers and images: unmounts overlays, frees the store."""
        self.run("rm", "--all", check=False)
        self.run("rmi", "--all", "--force", check=False)
