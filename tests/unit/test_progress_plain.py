"""The plain progress log: BuildKit's format, one step number on every line, stages
running in parallel never glued together, a command's control characters shown."""

from __future__ import annotations

import io
import threading

from distill.builder.progress import Numbers, StageSteps
from distill.cli.progress import PlainProgress, QuietProgress
from tests.helpers.progress import parse_plain


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_step_header_output_and_result() -> None:
    out = io.StringIO()
    clock = _Clock()
    progress = PlainProgress(out, clock=clock)
    progress.started(1, "[build 2/3] RUN make")
    clock.now += 0.25
    progress.output(1, b"compiling\nlinking")
    clock.now += 0.5
    progress.output(1, b" done\n")
    progress.finished(1, "DONE", 0.8)
    assert out.getvalue().splitlines() == [
        "#1 [build 2/3] RUN make",
        "#1 0.250 compiling",
        "#1 0.750 linking done",
        "#1 DONE 0.8s",
    ]


def test_parallel_steps_keep_their_numbers_and_headers_their_lines() -> None:
    out = io.StringIO()
    progress = PlainProgress(out)
    numbers = Numbers()
    a, b = StageSteps(progress, numbers), StageSteps(progress, numbers)
    a.begin("[a 1/2] FROM busybox")
    b.begin("[b 1/2] FROM busybox")
    a.begin("[a 2/2] RUN x")
    b.begin("[b 2/2] RUN y")
    a.output.write(b"from a, no newline yet ")
    b.output.write(b"from b\n")
    a.output.write(b"end of a\n")
    a.end("DONE")
    b.end("CACHED")
    log = out.getvalue()
    for line in log.splitlines():
        assert line == "" or line.startswith("#"), line
        assert line.count("#") <= 1, f"two steps on one line: {line!r}"
    steps = {s.number: s for s in parse_plain(log)}
    assert steps[3].title == "[a 2/2] RUN x" and steps[3].output == ["from a, no newline yet end of a"]
    assert steps[4].output == ["from b"] and (steps[3].outcome, steps[4].outcome) == ("DONE", "CACHED")
    assert [s.outcome for s in (steps[1], steps[2])] == ["", ""]   # FROM: no result line


def test_threads_writing_at_once_never_share_a_line() -> None:
    out = io.StringIO()
    progress = PlainProgress(out)
    numbers = Numbers()

    def stage(name: str) -> None:
        steps = StageSteps(progress, numbers)
        steps.begin(f"[{name} 1/1] RUN loop")
        for i in range(200):
            steps.output.write(f"{name} line {i}\n".encode())
        steps.end("DONE")

    threads = [threading.Thread(target=stage, args=(n,)) for n in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    steps = parse_plain(out.getvalue())
    assert len(steps) == 4
    for s in steps:
        name = s.title[1]
        assert s.output == [f"{name} line {i}" for i in range(200)] and s.outcome == "DONE"


def test_control_characters_are_shown_not_obeyed() -> None:
    out = io.StringIO()
    progress = PlainProgress(out)
    progress.started(1, "[x 1/1] RUN evil\x1b]52;c;bad\x07")
    progress.output(1, b"\x1b[2J\x1b]0;title\x07clear\rover\r\nnext\n\xff\xfe bytes\n")
    progress.finished(1, "DONE", 0.1)
    log = out.getvalue()
    assert "\x1b" not in log and "\r" not in log and "\x07" not in log
    assert "\\x1b[2J" in log and "\\xff\\xfe bytes" in log
    steps = parse_plain(log)
    assert steps[0].output == [
        "\\x1b[2J\\x1b]0;title\\x07clear", "over", "next", "\\xff\\xfe bytes"]


def test_an_endless_line_is_shown_in_pieces() -> None:
    out = io.StringIO()
    progress = PlainProgress(out)
    progress.started(1, "[x 1/1] RUN yes")
    progress.output(1, b"y" * 100_000)
    progress.finished(1, "DONE", 1.0)
    steps = parse_plain(out.getvalue())
    assert "".join(steps[0].output) == "y" * 100_000 and len(steps[0].output) > 1


def test_a_failed_step_says_error_and_quiet_keeps_the_titles() -> None:
    out = io.StringIO()
    progress = PlainProgress(out)
    progress.started(1, "[x 1/2] FROM a")
    progress.finished(1, "", 0.0)
    progress.started(2, "[x 2/2] RUN false")
    progress.finished(2, "ERROR", 0.2)
    assert out.getvalue().splitlines()[-1] == "#2 ERROR"
    quiet = QuietProgress()
    quiet.started(1, "[x 1/2] FROM a")
    quiet.finished(1, "", 0.0)
    quiet.started(2, "[x 2/2] COPY a /")
    quiet.finished(2, "CACHED", 0.0)
    assert quiet.titles() == [("[x 1/2] FROM a", False), ("[x 2/2] COPY a /", True)]
