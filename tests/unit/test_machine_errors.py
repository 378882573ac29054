"""The machine's refusals (a full disk, a read-only store) are one line, never a traceback."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from distill.cli import main as cli_main
from distill.errors import MachineError, os_failure


def test_os_failure_names_what_and_where_with_a_hint() -> None:
    err = os_failure(OSError(errno.ENOSPC, "No space left on device"),
                     "cannot write a layer blob into the store at", "/store")
    assert isinstance(err, MachineError)
    assert err.message == ("cannot write a layer blob into the store at /store: "
                           "No space left on device")
    assert err.hint is not None and "free space" in err.hint and "/store" in err.hint
    ro = os_failure(OSError(errno.EROFS, "Read-only file system", "/store/x"), "cannot go on")
    assert ro.message == "cannot go on /store/x: Read-only file system"
    assert ro.hint is not None and "read-only" in ro.hint


def test_an_oserror_no_layer_named_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path) -> None:
    """Regression (issue 13): an OSError reached the user as a Python traceback."""
    def parser(_command: str | None = None):  # type: ignore[no-untyped-def]
        class Args:
            @staticmethod
            def run(_args: object) -> int:
                raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "f"))

        class Parser:
            @staticmethod
            def parse_args(_words: object) -> type:
                return Args
        return Parser

    monkeypatch.setattr(cli_main, "parser", parser)
    monkeypatch.delenv("DISTILL_DEBUG", raising=False)
    assert cli_main.main(["images"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: distill could not go on {tmp_path / 'f'}: "
                          "No space left on device\nhint: free space")
    assert "Traceback" not in err
