"""Turning errors and reports into what a terminal shows."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from distill.errors import DistillError
from distill.report.sizes import SizeRow, human

if TYPE_CHECKING:      # rich is imported when a table is drawn, not on every start
    from rich.console import Console
    from rich.table import Table


def stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


# C0 and C1 control characters but tab and newline: a hostile Dockerfile's NUL, escape
# sequence or carriage return is shown, not obeyed by the terminal
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with control characters written as ``\\xNN``."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


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


def size_table(rows: Sequence[SizeRow], title: str) -> Table:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("stage")
    table.add_column("layers", justify="right")
    table.add_column("compressed", justify="right")
    table.add_column("uncompressed", justify="right")
    table.add_column("added", justify="right")
    table.add_column("time", justify="right")
    for r in rows:
        # a stage no output ships is never compressed: its uncompressed size is shown
        table.add_row(
            r.label, str(r.layers), "-" if r.lazy else human(r.compressed),
            human(r.uncompressed),
            f"+{r.added_layers} ({human(r.added_uncompressed if r.lazy else r.added_compressed)})",
            f"{r.seconds:.1f}s" if r.seconds is not None else "",
        )
    return table
