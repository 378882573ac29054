"""The typed instructions of a Dockerfile, grouped into stages: one frozen dataclass per
instruction, its values raw (expanded at build time against the stage's environment, as
BuildKit does). :mod:`distill.dockerfile.typed` makes them from the parser's nodes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from distill.dockerfile.flags import format_go_duration
from distill.dockerfile.parser import Heredoc
from distill.errors import SourceLocation


@dataclass(frozen=True)
class Instruction:
    location: SourceLocation
    original: str


@dataclass(frozen=True)
class From(Instruction):
    image: str
    name: str | None = None
    platform: str | None = None


@dataclass(frozen=True)
class Arg(Instruction):
    pairs: tuple[tuple[str, str | None], ...]


@dataclass(frozen=True)
class Env(Instruction):
    pairs: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Label(Instruction):
    pairs: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Run(Instruction):
    command: tuple[str, ...]
    json: bool
    mounts: tuple[str, ...] = ()     # raw --mount values, expanded at build time
    network: str = "default"
    #: heredoc bodies as written (``<<-`` tabs kept: the shell or the step removes them)
    heredocs: tuple[Heredoc, ...] = ()


@dataclass(frozen=True)
class Copy(Instruction):
    sources: tuple[str, ...]
    dest: str
    from_: str | None = None
    chown: str | None = None
    chmod: str | None = None
    #: inline files from heredocs (``COPY <<EOF /dest``): name = the delimiter, content
    #: with ``<<-`` tabs already removed, expand = unquoted delimiter
    contents: tuple[Heredoc, ...] = ()
    excludes: tuple[str, ...] = ()   # raw --exclude patterns, expanded at build time
    parents: bool = False
    #: ``--link``: accepted and recorded, nothing else. BuildKit then copies onto an empty
    #: layer and merges it, so the layer can be rebased onto a changed base without
    #: rerunning. distill already makes every COPY its own layer holding just the copied
    #: files, so for the usual case (a destination whose directories are plain
    #: directories) the layer's files equal BuildKit's. Like BuildKit, a symlink of the
    #: base at DEST itself is replaced, not written through. Known difference: with
    #: --link, BuildKit neither follows a symlink of the base on the way to DEST nor keeps
    #: the metadata of existing destination directories (it creates them afresh); distill
    #: does what a COPY without --link does. The cache key does not survive a base change.
    link: bool = False


@dataclass(frozen=True)
class Add(Copy):
    checksum: str | None = None     # --checksum=sha256:... (HTTP sources; a commit for git)
    keep_git_dir: bool = False      # --keep-git-dir
    unpack: bool | None = None      # --unpack[=bool]; None: local archives yes, URLs no


@dataclass(frozen=True)
class Workdir(Instruction):
    path: str


@dataclass(frozen=True)
class User(Instruction):
    user: str


@dataclass(frozen=True)
class Cmd(Instruction):
    command: tuple[str, ...]
    json: bool


@dataclass(frozen=True)
class Entrypoint(Instruction):
    command: tuple[str, ...]
    json: bool


@dataclass(frozen=True)
class Expose(Instruction):
    ports: tuple[str, ...]


@dataclass(frozen=True)
class Shell(Instruction):
    """SHELL ["executable", "param", ...]: the shell of later shell-form commands."""

    shell: tuple[str, ...]


@dataclass(frozen=True)
class StopSignal(Instruction):
    signal: str                       # raw; expanded and checked at build time


@dataclass(frozen=True)
class Volume(Instruction):
    volumes: tuple[str, ...]          # raw (trimmed); each expanded at build time


@dataclass(frozen=True)
class Maintainer(Instruction):
    """Deprecated, but still sets the image's ``author`` (never expanded)."""

    maintainer: str


@dataclass(frozen=True)
class Healthcheck(Instruction):
    """HEALTHCHECK NONE | [flags] CMD ...; durations in nanoseconds, 0 = inherit."""

    test: tuple[str, ...]             # ("NONE",) | ("CMD", *argv) | ("CMD-SHELL", line)
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0

    def config(self) -> dict[str, Any]:
        """The ``Healthcheck`` object Docker stores (Go's omitempty: zero fields left out)."""
        out: dict[str, Any] = {}
        if self.test:
            out["Test"] = list(self.test)
        for key, value in (("Interval", self.interval), ("Timeout", self.timeout),
                           ("StartPeriod", self.start_period),
                           ("StartInterval", self.start_interval), ("Retries", self.retries)):
            if value:
                out[key] = value
        return out

    def history(self) -> str:
        """BuildKit's history line: Go's %+v of the struct."""
        d = format_go_duration
        return (f"HEALTHCHECK {{Test:[{' '.join(self.test)}] Interval:{d(self.interval)} "
                f"Timeout:{d(self.timeout)} StartPeriod:{d(self.start_period)} "
                f"StartInterval:{d(self.start_interval)} Retries:{self.retries}}}")


@dataclass(frozen=True)
class Onbuild(Instruction):
    """ONBUILD <instruction>: stored as text, run by stages built on this image."""

    expression: str                   # the trigger text as it goes into config OnBuild
    trigger: str                      # its instruction keyword, upper-cased


@dataclass(frozen=True)
class Stage:
    index: int
    source: From
    instructions: tuple[Instruction, ...] = field(default=())

    @property
    def name(self) -> str | None:
        return self.source.name


@dataclass(frozen=True)
class Dockerfile:
    global_args: tuple[Arg, ...]
    stages: tuple[Stage, ...]


