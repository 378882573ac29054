"""What a build hands on besides its output, as ``docker buildx build`` does it:
``--iidfile``, ``--metadata-file`` and ``--load``.

* ``--iidfile`` gets the image ID, the digest of the image config, as buildx writes it
  for every image exporter (``containerimage.config.digest``); a stale file is removed
  before the build starts, so a failed build leaves none.
* ``--metadata-file`` gets buildx's JSON: ``containerimage.config.digest``,
  ``containerimage.digest`` (the manifest's digest: what distill prints), its
  ``containerimage.descriptor`` and, when the image is tagged, ``image.name`` (the names,
  comma-separated), written atomically.
* ``--load`` is ``--output type=docker`` piped into ``docker load``: Docker's CLI must be
  on PATH and its engine (``DOCKER_HOST``, or the CLI's current context) must answer,
  which is checked before the build starts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from distill.builder.export import OutputSpec
from distill.errors import DistillError, UsageError
from distill.formats.oci_layout import Tagged, write_layout_tar
from distill.formats.stored import save
from distill.image.image import Image
from distill.store.names import atomic_write
from distill.store.store import Store

#: Seconds to wait for Docker's engine to answer ``docker version``.
DOCKER_TIMEOUT = 30


def metadata(image: Image, names: tuple[str, ...]) -> dict[str, object]:
    """The ``--metadata-file`` document for ``image`` tagged ``names``."""
    manifest = image.manifest_descriptor()
    doc: dict[str, object] = {
        "containerimage.config.digest": str(image.config_descriptor().digest),
        "containerimage.digest": str(manifest.digest),
        "containerimage.descriptor": {"mediaType": manifest.media_type,
                                      "digest": str(manifest.digest), "size": manifest.size},
    }
    if names:
        doc["image.name"] = ",".join(names)
    return doc


class DockerEngine:
    """Docker's engine, through its CLI: found (and answering) or a DistillError."""

    def __init__(self, cli: str) -> None:
        self.cli = cli

    @classmethod
    def find(cls) -> DockerEngine:
        cli = shutil.which("docker")
        if cli is None:
            raise DistillError("--load needs Docker's CLI, and there is no 'docker' on PATH",
                               hint="install Docker's CLI (Debian: docker.io); or write the "
                                    "image with --output type=docker,dest=FILE and run "
                                    "'docker load -i FILE' where Docker runs")
        try:
            proc = subprocess.run([cli, "version", "--format", "{{.Server.Version}}"],
                                  capture_output=True, text=True, timeout=DOCKER_TIMEOUT,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise DistillError(f"--load: Docker's engine did not answer within "
                               f"{DOCKER_TIMEOUT}s ({_where()})", hint=_LOAD_HINT) from None
        except OSError as e:
            raise DistillError(f"--load: cannot run {cli}: {e.strerror or e}") from None
        if proc.returncode != 0 or not proc.stdout.strip():
            said = _last_line(proc.stderr) or f"docker version exited {proc.returncode}"
            raise DistillError(f"--load: Docker's engine does not answer ({_where()}): {said}",
                               hint=_LOAD_HINT)
        return cls(cli)

    def load(self, store: Store, image: Image, names: tuple[str, ...]) -> str:
        """``docker load`` the image (tagged ``names``); returns what docker said."""
        save(store, image)
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen([self.cli, "load"], stdin=subprocess.PIPE, stdout=out,
                                    stderr=err)
            assert proc.stdin is not None
            try:
                write_layout_tar(store, [Tagged(image, names)], proc.stdin,  # type: ignore[arg-type]
                                 docker_manifest=True)
                proc.stdin.close()
            except BrokenPipeError:
                pass  # docker load stopped reading: its exit status and stderr say why
            finally:
                returncode = proc.wait()
            out.seek(0)
            err.seek(0)
            said, complaint = out.read().decode(errors="replace"), err.read().decode(
                errors="replace")
        if returncode != 0:
            raise DistillError(f"--load: docker load failed ({_where()}): "
                               f"{_last_line(complaint) or f'exit status {returncode}'}")
        return said.strip()


_LOAD_HINT = ("start Docker's engine or point DOCKER_HOST at one; or write the image with "
              "--output type=docker,dest=FILE and run 'docker load -i FILE' where Docker runs")


def _where() -> str:
    host = os.environ.get("DOCKER_HOST")
    if host:
        return f"DOCKER_HOST={host}"
    return ("DOCKER_HOST is unset: the CLI's current context, by default "
            "unix:///var/run/docker.sock")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


@dataclass
class BuildResults:
    """``--iidfile``, ``--metadata-file`` and ``--load`` of one build: checked by
    :meth:`prepare` before the build, delivered by :meth:`deliver` after it."""

    iidfile: Path | None = None
    metadata_file: Path | None = None
    docker: DockerEngine | None = None

    @classmethod
    def prepare(cls, *, iidfile: str | None, metadata_file: str | None, load: bool,
                output: OutputSpec | None) -> BuildResults:
        if load and output is not None:
            other = "--push" if output.push else f"--output type={output.type}"
            raise UsageError(f"--load and {other} cannot be used together",
                             hint="--load is --output type=docker into Docker's engine")
        for flag, value in (("--iidfile", iidfile), ("--metadata-file", metadata_file)):
            if value is not None and (not value or Path(value).is_dir()):
                raise UsageError(f"{flag} {value!r} is not a file name")
        results = cls(Path(iidfile) if iidfile else None,
                      Path(metadata_file) if metadata_file else None,
                      DockerEngine.find() if load else None)
        if results.iidfile is not None:
            results.iidfile.unlink(missing_ok=True)   # a failed build leaves no stale ID
        return results

    def deliver(self, store: Store, image: Image, names: tuple[str, ...],
                log: Callable[[str], None]) -> None:
        if self.docker is not None:
            for line in self.docker.load(store, image, names).splitlines():
                log(line)
        try:
            if self.iidfile is not None:
                self.iidfile.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(self.iidfile, str(image.config_descriptor().digest).encode())
            if self.metadata_file is not None:
                doc = json.dumps(metadata(image, names), indent=2, sort_keys=True)
                self.metadata_file.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(self.metadata_file, doc.encode())
        except OSError as e:
            raise DistillError(f"cannot write {e.filename or 'the result file'}: "
                               f"{e.strerror or e}") from None
