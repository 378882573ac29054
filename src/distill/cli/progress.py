"""Drawing a build's progress: BuildKit's plain log, or a live view on a terminal.

``--progress plain`` is BuildKit's format: a step's header ``#N [stage 2/4] RUN ...``,
each line its command prints as ``#N 0.512 text`` (seconds since the step started),
its end as ``#N DONE 1.2s`` or ``#N CACHED``; a blank line where the log turns from one
step to another, so that stages running in parallel stay readable. ``tty`` (``auto`` on
a terminal) redraws the running steps in place with their timers and last lines of
output, and leaves the same lines as plain does for the steps that ended.

What a command prints is the Dockerfile's, so hostile: control characters (escape
sequences, carriage returns that redraw the user's terminal) are shown, not obeyed."""

from __future__ import annotations

import codecs
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Self, TextIO

from distill.cli.render import printable

if TYPE_CHECKING:        # rich loads only for the live view
    from rich.console import Console, RenderableType

#: a line longer than this is shown in pieces (a command that never prints a newline)
MAX_LINE = 16384


@dataclass
class _Step:
    number: int
    title: str
    started: float
    pending: str = ""            # a line not yet ended
    decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")("backslashreplace"))
    last_lines: list[str] = field(default_factory=list)
    outcome: str = ""
    seconds: float = 0.0
    ended: bool = False


class StepLog(ABC):
    """A Progress (builder/progress.py) that keeps the steps' titles and whether each
    made a layer step (had a result line): the build's record replays them
    (builder/memo.py)."""

    def __init__(self) -> None:
        self.steps: dict[int, _Step] = {}
        self.lock = threading.Lock()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    @abstractmethod
    def started(self, step: int, title: str) -> None: ...

    @abstractmethod
    def output(self, step: int, data: bytes) -> None: ...

    @abstractmethod
    def finished(self, step: int, outcome: str, seconds: float) -> None: ...

    @abstractmethod
    def note(self, text: str) -> None: ...

    def titles(self) -> list[tuple[str, bool]]:
        return [(s.title, s.outcome in ("DONE", "CACHED"))
                for _, s in sorted(self.steps.items())]

    def _lines(self, step: _Step, data: bytes, final: bool = False) -> list[str]:
        """Whole lines of ``data`` (with what was pending), printable; a carriage return
        ends a line as a newline does (a progress bar's updates become lines)."""
        text = step.pending + step.decoder.decode(data, final=final)
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        *lines, step.pending = text.split("\n")
        if final and step.pending:
            lines.append(step.pending)
            step.pending = ""
        while len(step.pending) > MAX_LINE:
            lines.append(step.pending[:MAX_LINE])
            step.pending = step.pending[MAX_LINE:]
        return [printable(line) for line in lines]


class PlainProgress(StepLog):
    def __init__(self, out: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._out = out or sys.stderr
        self._clock = clock
        self._last: int | None = None    # the step whose line was written last

    def _write(self, step: int | None, lines: list[str]) -> None:
        """Under the lock: ``lines`` in one write, after a blank line if the log turns
        to another step."""
        if not lines:
            return
        gap = "\n" if self._last is not None and step != self._last else ""
        self._last = step
        self._out.write(gap + "".join(f"{line}\n" for line in lines))
        self._out.flush()

    def started(self, step: int, title: str) -> None:
        with self.lock:
            record = _Step(step, printable(title), self._clock())
            self.steps[step] = record
            self._write(step, [f"#{step} {record.title}"])

    def output(self, step: int, data: bytes) -> None:
        with self.lock:
            record = self.steps[step]
            at = self._clock() - record.started
            self._write(step, [f"#{step} {at:.3f} {line}".rstrip()
                               for line in self._lines(record, data)])

    def finished(self, step: int, outcome: str, seconds: float) -> None:
        with self.lock:
            record = self.steps[step]
            at = self._clock() - record.started
            lines = [f"#{step} {at:.3f} {line}".rstrip()
                     for line in self._lines(record, b"", final=True)]
            record.outcome, record.seconds = outcome, seconds
            if outcome == "DONE":
                lines.append(f"#{step} DONE {seconds:.1f}s")
            elif outcome == "CACHED":
                lines.append(f"#{step} CACHED")
            elif outcome in ("ERROR", "CANCELED"):
                lines.append(f"#{step} {outcome}")
            # "": a step that makes no layer ends with no line, as in BuildKit's log
            self._write(step, lines)

    def note(self, text: str) -> None:
        with self.lock:
            self._write(None, [f"# {printable(text)}"])


class QuietProgress(StepLog):
    """Shows nothing; keeps the titles for the build's record."""

    def started(self, step: int, title: str) -> None:
        with self.lock:
            self.steps[step] = _Step(step, printable(title), 0.0)

    def output(self, step: int, data: bytes) -> None:
        pass

    def finished(self, step: int, outcome: str, seconds: float) -> None:
        with self.lock:
            self.steps[step].outcome = outcome

    def note(self, text: str) -> None:
        pass


class TtyProgress(StepLog):
    """The live view: running steps with their timers and last lines of output, redrawn
    in place (rich); each step that ends leaves one line above them, as BuildKit's tty
    view does (``=> [build 2/4] RUN make  3.2s``, ``=> CACHED [build 3/4] COPY ...``)."""

    TAIL = 6      # lines of output shown under a running step

    def __init__(self, console: Console | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        from rich.live import Live

        from distill.cli.render import stderr_console

        self._clock = clock
        self._console = console or stderr_console()
        self._print_lock = threading.Lock()
        self._live = Live(console=self._console, transient=True, refresh_per_second=8,
                          get_renderable=self._render)

    def __enter__(self) -> Self:
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.stop()

    def _render(self) -> RenderableType:
        from rich.console import Group
        from rich.text import Text

        now = self._clock()
        parts: list[RenderableType] = []
        with self.lock:
            running = [s for s in self.steps.values() if not s.ended]
            for step in running[-8:]:
                parts.append(_line(f"=> {step.title}", f"{now - step.started:.1f}s",
                                   "bold blue", self._console.width))
                for out in step.last_lines[-self.TAIL:]:
                    parts.append(Text(f"   {out}", style="dim", overflow="ellipsis",
                                      no_wrap=True))
        return Group(*parts)

    def _print(self, text: str, right: str = "", style: str = "",
               extra: list[str] | None = None) -> None:
        """A line above the live view, cut to the terminal's width (``right`` kept),
        and ``extra`` lines under it, in one print."""
        from rich.console import Group

        width = self._console.width
        lines = [_line(text, right, style, width),
                 *(_line(more, "", style, width) for more in extra or ())]
        with self._print_lock:
            # the live view is drawn again below the line: from the state as it is
            # now, not as the last refresh saw it (an ended step would show as running)
            self._live.refresh()
            self._live.console.print(Group(*lines))

    def started(self, step: int, title: str) -> None:
        with self.lock:
            self.steps[step] = _Step(step, printable(title), self._clock())

    def output(self, step: int, data: bytes) -> None:
        with self.lock:
            record = self.steps[step]
            record.last_lines = (record.last_lines + self._lines(record, data))[-self.TAIL:]

    def finished(self, step: int, outcome: str, seconds: float) -> None:
        with self.lock:
            record = self.steps[step]
            record.last_lines = (record.last_lines + self._lines(record, b"", final=True)
                                 )[-self.TAIL:]
            record.outcome, record.seconds, record.ended = outcome, seconds, True
        if outcome == "CACHED":
            self._print(f"=> CACHED {record.title}", "", "blue")
        elif outcome in ("ERROR", "CANCELED"):
            # what it printed last stays on screen, in the same print as its line (a
            # parallel stage's lines cannot come between)
            tail = record.last_lines if outcome == "ERROR" else []
            self._print(f"=> {outcome} {record.title}", f"{seconds:.1f}s", "bold red",
                        extra=[f"   {line}" for line in tail])
        elif outcome == "DONE":
            self._print(f"=> {record.title}", f"{seconds:.1f}s", "blue")
        else:
            self._print(f"=> {record.title}", "", "blue")

    def note(self, text: str) -> None:
        self._print(f"# {printable(text)}")


def _line(text: str, right: str, style: str, width: int) -> RenderableType:
    """One line of at most ``width`` cells: ``text`` cut with an ellipsis where it is too
    long, ``right`` (a timer) always shown at its end."""
    from rich.text import Text

    tail = f"  {right}" if right else ""
    line = Text(text, style=style, no_wrap=True, overflow="ellipsis")
    line.truncate(max(width - len(tail), 10), overflow="ellipsis")
    line.append(tail)
    return line


def make_progress(mode: str, quiet: bool) -> StepLog:
    """The view ``--progress`` asks for: ``auto`` is the live view on a terminal and the
    plain log elsewhere (a CI log, a pipe), as BuildKit chooses."""
    if quiet or mode == "quiet":
        return QuietProgress()
    if mode == "tty" or (mode == "auto" and sys.stderr.isatty()):
        return TtyProgress()
    return PlainProgress()
