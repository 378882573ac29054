"""Hostile text shown, not obeyed: the one rule the terminal, the HTML report and the
JSON documents share (distill.report.text)."""

from __future__ import annotations

import json

from distill.cli.render import one_line, printable
from distill.report.text import visible, visible_json


def test_controls_bidi_and_undecodable_bytes_become_escapes() -> None:
    hostile = "a\x1b]52;c;x\x07b\rc\u202etxt.exe\udcff\ud800"
    assert visible(hostile) == "a\\x1b]52;c;x\\x07b\\x0dc\\u202etxt.exe\\xff\\ud800"
    assert printable("two\nlines\tand\x1b[2J") == "two\nlines\tand\\x1b[2J"


def test_a_name_cannot_forge_a_line_of_a_report() -> None:
    assert one_line("zz\n\nsecurity: no findings\n") == "zz\\x0a\\x0asecurity: no findings\\x0a"


def test_a_json_document_stays_utf8() -> None:
    doc = visible_json({"path": "/x\udcff", "list": ["\u2066y"], "n": 3, "k\x00": True})
    text = json.dumps(doc, ensure_ascii=False)
    text.encode("utf-8")
    assert doc == {"path": "/x\\xff", "list": ["\\u2066y"], "n": 3, "k\\x00": True}
