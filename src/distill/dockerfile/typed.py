"""Parser nodes -> typed instructions grouped into stages: each instruction's flags
checked, its arguments shaped and its errors pointing at its lines, as BuildKit's
``instructions.Parse`` does. No variable expansion here."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import fields, replace

from distill.dockerfile.flags import (
    bool_flag,
    go_quote,
    parse_flags,
    parse_go_duration,
    parse_go_int32,
    repeated_flag,
)
from distill.dockerfile.instructions import (
    Add,
    Arg,
    Cmd,
    Copy,
    Dockerfile,
    Entrypoint,
    Env,
    Expose,
    From,
    Healthcheck,
    Instruction,
    Label,
    Maintainer,
    Onbuild,
    Run,
    Shell,
    Stage,
    StopSignal,
    User,
    Volume,
    Workdir,
)
from distill.dockerfile.kernel import shown
from distill.dockerfile.mounts import mount_from, parse_network
from distill.dockerfile.parser import Heredoc, Node, chomp_heredoc_content, parse, parse_heredoc
from distill.errors import DockerfileError, SourceLocation


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
    """BuildKit counts the arguments before it looks at the flags."""
    if len(node.args) != 1 or not node.args[0]:
        raise _err(node, f"{what} requires exactly one argument")
    _no_flags(node)
    return node.args[0]


def _json_args(node: Node) -> tuple[str, ...]:
    """handleJSONArgs: exec form as is; shell form joined into one string."""
    if not node.args:
        return ()
    return tuple(node.args) if node.json else (" ".join(node.args),)


def _go_upper(s: str) -> str:
    """Go's strings.ToUpper: one rune to one rune (Python's 'ß'.upper() is 'SS')."""
    return "".join(u if len(u := c.upper()) == 1 else c for c in s)


def _shell(node: Node) -> Shell:
    _no_flags(node)
    words = _json_args(node)
    if not words:
        raise _err(node, "SHELL requires at least one argument")
    if not node.json:
        raise _err(node, "SHELL requires the arguments to be in JSON form",
                   'e.g. SHELL ["/bin/bash", "-o", "pipefail", "-c"]')
    return Shell(node.location, node.original, words)


def _volume(node: Node) -> Volume:
    if not node.args:
        raise _err(node, "VOLUME requires at least one argument")
    _no_flags(node)
    volumes = []
    for word in node.args:
        word = word.strip(_GO_SPACE)
        if not word:
            raise _err(node, "VOLUME specified can not be an empty string")
        volumes.append(word)
    return Volume(node.location, node.original, tuple(volumes))


_HEALTH_FLAGS: dict[str, str | None] = {"interval": "", "timeout": "", "start-period": "",
                                        "start-interval": "", "retries": ""}


def _interval(node: Node, name: str, value: str | None) -> int:
    """parseOptInterval: empty or zero means "inherit"; otherwise at least 1ms."""
    if not value:
        return 0
    try:
        ns = parse_go_duration(value)
    except ValueError as e:
        raise _err(node, str(e)) from None
    if ns != 0 and ns < 1_000_000:
        raise _err(node, f"Interval {go_quote(name)} cannot be less than 1ms")
    return ns


def _healthcheck(node: Node) -> Healthcheck:
    if not node.args:
        raise _err(node, "HEALTHCHECK requires at least one argument")
    kind = _go_upper(node.args[0])
    rest = node.args[1:]
    loc, orig = node.location, node.original
    if kind == "NONE":
        # BuildKit never parses the flags of HEALTHCHECK NONE: they are ignored.
        if rest:
            raise _err(node, "HEALTHCHECK NONE takes no arguments")
        return Healthcheck(loc, orig, ("NONE",))
    flags = parse_flags(node, _HEALTH_FLAGS)
    if kind != "CMD":
        raise _err(node, f"Unknown type {go_quote(kind)} in HEALTHCHECK (try CMD)",
                   "HEALTHCHECK [OPTIONS] CMD command, or HEALTHCHECK NONE")
    command = tuple(rest) if node.json else ((" ".join(rest),) if rest else ())
    if not command:
        raise _err(node, "Missing command after HEALTHCHECK CMD")
    test = ("CMD", *command) if node.json else ("CMD-SHELL", *command)
    interval, timeout, start_period, start_interval = (
        _interval(node, name, flags[name])
        for name in ("interval", "timeout", "start-period", "start-interval"))
    retries, raw_retries = 0, flags["retries"]
    if raw_retries:
        try:
            retries = parse_go_int32(raw_retries)
        except ValueError as e:
            raise _err(node, str(e)) from None
        if retries < 0:
            raise _err(node, f"--retries cannot be negative ({retries})")
    return Healthcheck(loc, orig, test, interval=interval, timeout=timeout,
                       start_period=start_period, start_interval=start_interval,
                       retries=retries)


# BuildKit strips the keyword with the Go regexp (?i)^\s*ONBUILD\s* (\s is ASCII only).
# BuildKit's validStageName, matched against the lower-cased name
_STAGE_NAME = re.compile(r"[a-z][a-z0-9\-_.]*\Z")
_ONBUILD_PREFIX = re.compile(r"^[\t\n\f\r ]*ONBUILD[\t\n\f\r ]*", re.IGNORECASE)
# Go's unicode.IsSpace (strings.TrimSpace); Python's str.strip() also strips \x1c-\x1f.
_GO_SPACE = ("\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
             "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")


def _onbuild(node: Node) -> Onbuild:
    trigger = node.sub_cmd
    if not trigger:
        raise _err(node, "ONBUILD requires at least one argument")
    _no_flags(node)
    keyword = _go_upper(trigger.strip(_GO_SPACE))
    if keyword == "ONBUILD":
        raise _err(node, "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if keyword in ("MAINTAINER", "FROM"):
        raise _err(node, f"{keyword} isn't allowed as an ONBUILD trigger")
    # BuildKit's Original is the logical line alone (some parsers append heredoc bodies)
    line = node.original.split("\n", 1)[0]
    expression = _ONBUILD_PREFIX.sub("", line, count=1)
    for doc in node.heredocs or _onbuild_heredocs(node):
        expression += "\n" + doc.content + doc.name
    return Onbuild(node.location, node.original, expression, keyword)


def _onbuild_heredocs(node: Node) -> tuple[Heredoc, ...]:
    """Heredocs of ``ONBUILD RUN <<EOF``: the parser package drops those of a nested
    instruction, so read them again from the instruction's own lines."""
    if "<<" not in node.original.split("\n", 1)[0] or node.location.end == node.location.start:
        return ()
    text = _ONBUILD_PREFIX.sub("", node.location.text, count=1)
    try:
        nodes = parse(text + "\n", node.location.path)
    except DockerfileError:
        return ()
    return nodes[0].heredocs if len(nodes) == 1 else ()


def _copy(node: Node) -> Copy:
    if len(node.args) < 2:
        raise _err(node, "COPY requires at least two arguments, but only one was provided. "
                         "Destination could not be determined")
    rest, link = bool_flag(node, "link")
    rest, parents = bool_flag(rest, "parents")
    rest, excludes = repeated_flag(rest, "exclude")
    flags = parse_flags(rest, {"from": None, "chown": None, "chmod": None})
    try:
        if parse_heredoc(node.args[-1]) is not None:
            raise _err(node, "COPY cannot accept a heredoc as a destination")
        bodies = {doc.name: doc for doc in node.heredocs}
        sources: list[str] = []
        contents: list[Heredoc] = []
        for word in node.args[:-1]:
            doc = parse_heredoc(word)
            if doc is None:
                sources.append(word)
                continue
            body = bodies.get(doc.name)
            content = body.content if body is not None else ""
            if doc.chomp:
                content = chomp_heredoc_content(content)
            contents.append(Heredoc(doc.name, content, doc.file_descriptor,
                                    expand=doc.expand, chomp=doc.chomp))
    except DockerfileError as e:
        raise e.at(node.location) from None
    return Copy(node.location, node.original, tuple(sources), node.args[-1], flags["from"],
                flags["chown"], flags["chmod"], contents=tuple(contents),
                excludes=excludes, parents=parents, link=link)


def _add(node: Node) -> Add:
    rest, keep_git_dir = bool_flag(node, "keep-git-dir")
    unpack: bool | None = None
    if any(f == "--unpack" or f.startswith("--unpack=") for f in rest.flags):
        rest, unpack = bool_flag(rest, "unpack")
    rest, checksums = repeated_flag(rest, "checksum")
    if len(checksums) > 1:
        raise _err(node, "duplicate flag specified: --checksum")
    for raw in rest.flags:
        name = raw[2:].split("=", 1)[0]
        if name in ("from", "parents"):          # COPY-only flags
            raise _err(node, f"unknown flag: --{name}")
    if len(node.args) < 2:
        raise _err(node, "ADD requires at least two arguments, but only one was provided. "
                         "Destination could not be determined")
    base = _copy(rest)
    return Add(**{f.name: getattr(base, f.name) for f in fields(base)},
               checksum=checksums[0] if checksums else None, keep_git_dir=keep_git_dir,
               unpack=unpack)


def parse_trigger(expression: str, location: SourceLocation) -> Instruction:
    """An ONBUILD trigger from a base image, parsed as BuildKit does (on its own, with the
    default escape character); errors point at ``location``, the stage's FROM."""
    hint = f"in the ONBUILD trigger {expression!r} of the base image"
    try:
        nodes = parse(expression, location.path)
        if len(nodes) != 1:
            raise DockerfileError("onbuild trigger should be a single expression")
        inst = to_instruction(replace(nodes[0], location=location))
    except DockerfileError as e:
        hint = f"{e.hint}; {hint}" if e.hint else hint
        raise DockerfileError(e.message, hint=hint, location=location) from None
    if isinstance(inst, From):
        raise DockerfileError("FROM isn't allowed as an ONBUILD trigger", hint=hint,
                              location=location)
    return replace(inst, original="ONBUILD " + inst.original)


def _from(node: Node) -> From:
    flags = parse_flags(node, {"platform": None})
    args = node.args
    if len(args) == 3 and args[1].lower() == "as":
        return From(node.location, node.original, args[0], args[2].lower(), flags["platform"])
    if len(args) != 1:
        raise _err(node, "FROM requires either one or three arguments: FROM <image> [AS <name>]")
    return From(node.location, node.original, args[0], None, flags["platform"])


def _arg(node: Node) -> Arg:
    _no_flags(node)
    if not node.args:
        raise _err(node, "ARG requires at least one argument")
    pairs: list[tuple[str, str | None]] = []
    for word in node.args:
        name, eq, default = word.partition("=")
        if not name:
            raise _err(node, f"ARG names can not be blank: {word!r}")
        pairs.append((name, default if eq else None))
    return Arg(node.location, node.original, tuple(pairs))


def _env(node: Node) -> Env:
    _no_flags(node)
    return Env(node.location, node.original, _pairs(node, "ENV"))


def _label(node: Node) -> Label:
    _no_flags(node)
    return Label(node.location, node.original, _pairs(node, "LABEL"))


def _run(node: Node) -> Run:
    rest, mounts = repeated_flag(node, "mount")
    flags = parse_flags(rest, {"network": None})
    try:
        for value in mounts:
            mount_from(value)  # BuildKit's parse-time checks
        network = parse_network(flags["network"] or "default")
    except DockerfileError as e:
        raise e.at(node.location) from None
    if not node.args or (not node.json and not node.args[0].strip()):
        raise _err(node, "RUN requires at least one argument")
    return Run(node.location, node.original, node.args, node.json, mounts, network,
               node.heredocs)


def _exec_form(cls: type[Cmd | Entrypoint]) -> Callable[[Node], Instruction]:
    def parse(node: Node) -> Instruction:
        _no_flags(node)
        return cls(node.location, node.original, node.args, node.json)
    return parse


def _expose(node: Node) -> Expose:
    _no_flags(node)
    if not node.args or not node.args[0]:
        raise _err(node, "EXPOSE requires at least one argument")
    return Expose(node.location, node.original, tuple(" ".join(node.args).split()))


def _stopsignal(node: Node) -> StopSignal:
    # BuildKit does not parse STOPSIGNAL's flags: they are ignored.
    if len(node.args) != 1:
        raise _err(node, "STOPSIGNAL requires exactly one argument")
    return StopSignal(node.location, node.original, node.args[0])


#: Every instruction distill knows, by keyword: how its node becomes its typed value.
#: (Its arguments were split by the parser's table, ``_lineparsers._DISPATCH``; its step
#: is ``builder/steps.py``'s ``HANDLERS``. tests/unit/test_instruction_tables.py checks
#: that the three agree.)
PARSERS: dict[str, Callable[[Node], Instruction]] = {
    "add": _add,
    "arg": _arg,
    "cmd": _exec_form(Cmd),
    "copy": _copy,
    "entrypoint": _exec_form(Entrypoint),
    "env": _env,
    "expose": _expose,
    "from": _from,
    "healthcheck": _healthcheck,
    "label": _label,
    "maintainer": lambda node: Maintainer(node.location, node.original,
                                          _one(node, "MAINTAINER")),
    "onbuild": _onbuild,
    "run": _run,
    "shell": _shell,
    "stopsignal": _stopsignal,
    "user": lambda node: User(node.location, node.original, _one(node, "USER")),
    "volume": _volume,
    "workdir": lambda node: Workdir(node.location, node.original, _one(node, "WORKDIR")),
}


def to_instruction(node: Node) -> Instruction:
    cmd = node.cmd
    parse = PARSERS.get(cmd)
    if parse is None:
        close = difflib.get_close_matches(cmd, list(PARSERS), n=1, cutoff=0.6)
        hint = f"did you mean {close[0].upper()}?" if close else None
        typed = (node.original.split() or [cmd])[0]      # BuildKit names it as written
        raise _err(node, f"unknown instruction: {typed}", hint)
    if node.heredocs and cmd not in ("run", "copy", "add", "onbuild"):
        raise _err(node, f"heredocs in {cmd.upper()} are not supported by distill yet")
    return parse(node)


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
                if not _STAGE_NAME.match(inst.name):
                    raise _err(node, f"invalid name for build stage: {shown(inst.name)}, name "
                                     "can't start with a number or contain symbols",
                               "a stage name is a letter, then letters, digits, '-', '_' or '.'")
                if inst.name in names:
                    raise _err(node, f"duplicate stage name {inst.name!r}")
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
