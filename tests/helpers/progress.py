"""Reading distill's plain progress (BuildKit's format) back: steps by number."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_HEADER = re.compile(r"#(\d+) (\[.*)$")
_OUTPUT = re.compile(r"#(\d+) (\d+\.\d{3})(?: (.*))?$")
_RESULT = re.compile(r"#(\d+) (CACHED|ERROR|CANCELED|DONE (\d+\.\d)s)$")


@dataclass
class Step:
    number: int
    title: str
    outcome: str = ""          # DONE, CACHED, ERROR, or "" (no result line)
    output: list[str] = field(default_factory=list)

    @property
    def instruction(self) -> str:
        """The title without its ``[stage i/n]`` prefix."""
        return self.title.split("] ", 1)[-1]


def parse_plain(log: str) -> list[Step]:
    """Every step of a plain log, in the order their headers appear. Raises
    AssertionError for a line starting with ``#<digit>`` that fits no form, or output
    or a result for a step with no header before it."""
    steps: dict[int, Step] = {}
    for line in log.splitlines():
        if not re.match(r"#\d", line):
            continue
        if m := _RESULT.match(line):
            assert int(m[1]) in steps, f"result before header: {line!r}"
            steps[int(m[1])].outcome = m[2].split()[0]
        elif m := _OUTPUT.match(line):
            assert int(m[1]) in steps, f"output before header: {line!r}"
            steps[int(m[1])].output.append(m[3] or "")
        elif m := _HEADER.match(line):
            assert int(m[1]) not in steps, f"header twice: {line!r}"
            steps[int(m[1])] = Step(int(m[1]), m[2])
        else:
            raise AssertionError(f"not a plain progress line: {line!r}")
    return list(steps.values())


def steps_run(log: str) -> int:
    """Steps that made a layer, not from the cache (DONE)."""
    return sum(1 for s in parse_plain(log) if s.outcome == "DONE")


def steps_cached(log: str) -> int:
    return sum(1 for s in parse_plain(log) if s.outcome == "CACHED")


_PREFIX = re.compile(r"^#\d+ \d+\.\d{3}(?: |$)", re.MULTILINE)


def without_prefixes(log: str) -> str:
    """``log`` with the ``#N 0.123 `` prefix of each output line taken off: what the
    build's commands printed reads as they printed it (headers and results stay)."""
    return _PREFIX.sub("", log)
