"""Raw nodes -> typed instructions grouped into stages. No variable expansion here:
values stay raw and are expanded at build time against the stage's environment,
as BuildKit does."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from distill.dockerfile.flags import parse_flags
from distill.dockerfile.parse import Node
from distill.errors import DockerfileError, SourceLocation

ALL_INSTRUCTIONS = (
    "add", "arg", "cmd", "copy", "entrypoint", "env", "expose", "from", "healthcheck",
    "label", "maintainer", "onbuild", "run", "shell", "stopsignal", "user", "volume", "workdir",
)
NOT_YET = {"add", "healthcheck", "onbuild", "shell", "stopsignal", "volume", "maintainer"}


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


@dataclass(frozen=True)
class Copy(Instruction):
    sources: tuple[str, ...]
    dest: str
    from_: str | None = None
    chown: str | None = None
    chmod: str | None = None


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


def _err(node: Node, message: str, hint: str | None = None) -> DockerfileError:
    return DockerfileError(message, hint=hint, location=node.location)


def _pairs(node: Node, what: str) -> tuple[tuple[str, str], ...]:
    if not node.args or len(node.args) % 2:
        raise _err(node, f"{what} requires at least one argument")
    return tuple((node.args[i], node.args[i + 1]) for i in range(0, len(node.args), 2))


def _no_flags(node: Node) -> None:
    if node.flags:
        parse_flags(node, {})


def _one(node: Node, what: str) -> str:
    _no_flags(node)
    if len(node.args) != 1 or not node.args[0]:
        raise _err(node, f"{what} requires exactly one argument")
    return node.args[0]


def to_instruction(node: Node) -> Instruction:
    loc, orig = node.location, node.original
    cmd = node.cmd
    if cmd not in ALL_INSTRUCTIONS:
        close = difflib.get_close_matches(cmd, ALL_INSTRUCTIONS, n=1, cutoff=0.6)
        hint = f"did you mean {close[0].upper()}?" if close else None
        raise _err(node, f"unknown instruction: {cmd.upper()}", hint)
    if cmd in NOT_YET:
        raise _err(node, f"{cmd.upper()} is not supported by distill yet")
    if node.heredocs:
        raise _err(node, f"heredocs in {cmd.upper()} are not supported by distill yet")
    if cmd == "from":
        flags = parse_flags(node, {"platform": None})
        args = node.args
        if len(args) == 3 and args[1].lower() == "as":
            return From(loc, orig, args[0], args[2].lower(), flags["platform"])
        if len(args) != 1:
            raise _err(node, "FROM requires either one or three arguments: FROM <image> [AS <name>]")
        return From(loc, orig, args[0], None, flags["platform"])
    if cmd == "arg":
        _no_flags(node)
        if not node.args:
            raise _err(node, "ARG requires at least one argument")
        pairs: list[tuple[str, str | None]] = []
        for word in node.args:
            name, eq, default = word.partition("=")
            if not name:
                raise _err(node, f"ARG names can not be blank: {word!r}")
            pairs.append((name, default if eq else None))
        return Arg(loc, orig, tuple(pairs))
    if cmd == "env":
        _no_flags(node)
        return Env(loc, orig, _pairs(node, "ENV"))
    if cmd == "label":
        _no_flags(node)
        return Label(loc, orig, _pairs(node, "LABEL"))
    if cmd == "run":
        flags = parse_flags(node, {})
        del flags
        if not node.args or (not node.json and not node.args[0].strip()):
            raise _err(node, "RUN requires at least one argument")
        return Run(loc, orig, node.args, node.json)
    if cmd == "copy":
        flags = parse_flags(node, {"from": None, "chown": None, "chmod": None})
        if len(node.args) < 2:
            raise _err(node, "COPY requires at least two arguments, but only one was provided. "
                             "Destination could not be determined")
        return Copy(loc, orig, node.args[:-1], node.args[-1], flags["from"], flags["chown"],
                    flags["chmod"])
    if cmd == "workdir":
        return Workdir(loc, orig, _one(node, "WORKDIR"))
    if cmd == "user":
        return User(loc, orig, _one(node, "USER"))
    if cmd in ("cmd", "entrypoint"):
        _no_flags(node)
        cls = Cmd if cmd == "cmd" else Entrypoint
        return cls(loc, orig, node.args, node.json)
    if cmd == "expose":
        _no_flags(node)
        if not node.args or not node.args[0]:
            raise _err(node, "EXPOSE requires at least one argument")
        return Expose(loc, orig, tuple(" ".join(node.args).split()))
    raise _err(node, f"{cmd.upper()} is not supported by distill yet")  # pragma: no cover


def build_dockerfile(nodes: list[Node]) -> Dockerfile:
    """Group instructions into stages; only ARG may come before the first FROM."""
    global_args: list[Arg] = []
    stages: list[Stage] = []
    current: From | None = None
    body: list[Instruction] = []
    names: set[str] = set()
    for node in nodes:
        inst = to_instruction(node)
        if isinstance(inst, From):
            if current is not None:
                stages.append(Stage(len(stages), current, tuple(body)))
            if inst.name is not None:
                if inst.name in names:
                    raise _err(node, f"duplicate stage name {inst.name!r}")
                if inst.name.isdigit() or not inst.name[:1].isalpha():
                    raise _err(node, f"invalid stage name {inst.name!r}: it must start with a letter")
                names.add(inst.name)
            current, body = inst, []
        elif current is None:
            if not isinstance(inst, Arg):
                raise _err(node, f"{node.cmd.upper()} before the first FROM: only ARG may come "
                                 "before FROM", "every stage starts with FROM <image>")
            global_args.append(inst)
        else:
            body.append(inst)
    if current is None:
        raise DockerfileError("the Dockerfile has no FROM instruction",
                              location=nodes[-1].location if nodes else None)
    stages.append(Stage(len(stages), current, tuple(body)))
    return Dockerfile(tuple(global_args), tuple(stages))
