"""Turning errors and reports into what a terminal shows."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from distill.errors import DistillError
from distill.report.sizes import BuildSizes, human
from distill.report.text import visible

if TYPE_CHECKING:      # rich is imported when a table is drawn, not on every start
    from rich.console import Console
    from rich.table import Table


def stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def printable(text: str) -> str:
    """``text`` (of one or more lines) with what a terminal must not obey written as
    ``\\xNN``: a hostile Dockerfile's NUL, escape sequence, carriage return, bidi
    override (distill.report.text)."""
    return visible(text, lines=True)


def one_line(text: str) -> str:
    """A name, path or instruction: its newlines and tabs escaped too (a file named
    "x\\nsecurity: no findings" must not forge a line of a report)."""
    return visible(text)


def render_error(err: DistillError) -> str:
    lines = []
    loc = err.location
    if loc is not None:
        lines.append(f"error: {printable(str(loc))}: {printable(err.message)}")
        for offset, text in enumerate(loc.text.split("\n")):
            lines.append(f" {loc.start + offset:>4} | {printable(text)}")
    else:
        lines.append(f"error: {printable(err.message)}")
    if err.hint:
        lines.append(f"hint: {printable(err.hint)}")
    return "\n".join(lines)


def print_error(err: DistillError) -> None:
    print(render_error(err), file=sys.stderr)


def print_sizes(console: Console, sizes: BuildSizes, title: str) -> None:
    """The summary, its verdict on one line however narrow the terminal (a copy-paste
    keeps it whole)."""
    from rich.text import Text

    console.print(Text(title, style="italic"))
    console.print(size_table(sizes))
    console.print(Text(sizes.verdict(), style="bold"), soft_wrap=True)


def size_table(sizes: BuildSizes) -> Table:
    """Each stage: its base and size, the bytes each step added and its time; then the
    final image against the largest stage."""
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False)
    # the sizes never give way: a long instruction is cut short instead
    width = max(20, stderr_console().width - 20)
    table.add_column("stage / step", overflow="ellipsis", no_wrap=True, max_width=width)
    table.add_column("size", justify="right", no_wrap=True, min_width=9)
    table.add_column("time", justify="right", no_wrap=True, min_width=6)
    for stage in sizes.stages:
        table.add_row(Text(f"{stage.label}  FROM {printable(stage.base)}", style="bold"),
                      human(stage.base_size), "")
        for step in stage.steps:
            when = "cached" if step.cached else \
                f"{step.seconds:.1f}s" if step.seconds is not None else ""
            table.add_row(Text(f"  {printable(step.instruction)}"),
                          "+" + human(step.added), when)
        table.add_row(Text(f"  = {stage.label}"), human(stage.size),
                      f"{stage.seconds:.1f}s" if stage.seconds is not None else "")
    return table
