"""What a build tells about its steps as they run, for the CLI to draw.

Every step of every stage gets the build's next number when it starts (BuildKit's
vertex numbers, ``#3``); what a step prints and how it ends are reported with its
number, so stages that run in parallel never mix their lines. The builder knows
nothing of terminals: a ``Progress`` receives the events (``cli/progress.py`` draws
them as BuildKit's plain log or as a live view)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol


class Progress(Protocol):
    def started(self, step: int, title: str) -> None: ...

    def output(self, step: int, data: bytes) -> None:
        """Bytes a step's command printed (stdout and stderr together)."""
        ...

    def finished(self, step: int, outcome: str, seconds: float) -> None:
        """``outcome``: DONE (the step ran), CACHED, ERROR, CANCELED (another stage
        failed), or "" (a step that makes no layer: FROM, ENV, ...)."""
        ...

    def note(self, text: str) -> None:
        """A line about the build rather than one step (a warning, a pull)."""
        ...


class Silent:
    """A Progress that shows nothing (``--progress quiet``; library use)."""

    def started(self, step: int, title: str) -> None:
        pass

    def output(self, step: int, data: bytes) -> None:
        pass

    def finished(self, step: int, outcome: str, seconds: float) -> None:
        pass

    def note(self, text: str) -> None:
        pass


@dataclass
class StepRecord:
    """One step as it went: for the report after the build."""

    number: int
    title: str
    outcome: str = ""          # DONE, CACHED, ERROR; "" for a step that makes no layer
    seconds: float = 0.0
    added: int = 0             # uncompressed bytes of the layer it made or found


class Numbers:
    """The build's step numbers, handed out in the order steps start."""

    def __init__(self) -> None:
        self._next: Iterator[int] = itertools.count(1)
        self._lock = threading.Lock()

    def start(self, progress: Progress, title: str) -> int:
        """The next number, reported started before any later number is (so that a log
        shows #2 before #3 whichever stage's thread asked first)."""
        with self._lock:
            number = next(self._next)
            progress.started(number, title)
            return number


@dataclass
class StageSteps:
    """One stage's steps, in turn (a stage runs one step at a time)."""

    progress: Progress
    numbers: Numbers
    records: list[StepRecord] = field(default_factory=list)
    _started: float = 0.0
    _ended: bool = True

    def begin(self, title: str) -> None:
        self.close()
        record = StepRecord(self.numbers.start(self.progress, title), title)
        self.records.append(record)
        self._started = time.monotonic()
        self._ended = False

    def end(self, outcome: str, added: int = 0) -> None:
        """The current step made its layer (DONE, ``added`` bytes), found it cached, or
        failed."""
        if not self.records or self._ended:
            return
        record = self.records[-1]
        record.outcome, record.added = outcome, added
        record.seconds = time.monotonic() - self._started
        self._ended = True
        self.progress.finished(record.number, outcome, record.seconds)

    def close(self) -> None:
        """The current step is over (a step that makes no layer ends with no outcome)."""
        self.end("")

    @property
    def output(self) -> StepOutput:
        """Where the current step's command writes."""
        return StepOutput(self)


class StepOutput:
    """A binary stream whose writes are the current step's output."""

    def __init__(self, steps: StageSteps) -> None:
        self._steps = steps

    def write(self, data: bytes) -> int:
        if self._steps.records and data:
            self._steps.progress.output(self._steps.records[-1].number, bytes(data))
        return len(data)

    def flush(self) -> None:
        pass
