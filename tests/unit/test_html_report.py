"""The HTML report: hostile names and instructions render as text, never as markup; the
page loads nothing and runs nothing; the treemap tiles its box in proportion to sizes; the
same input gives the same bytes."""

from __future__ import annotations

import base64
import copy
import hashlib
import re
from html.parser import HTMLParser
from typing import Any

from distill.report.html import CSS, render_html, squarify

SCRIPT_NAME = "</script><script>alert(1)</script>"
IMG = '<img src=x onerror="alert(2)">'
QUOTES = "a\"b'c onmouseover=alert(3)"


def _file(name: str, size: int, layer: int = 0) -> dict[str, Any]:
    return {"name": name, "size": size, "kind": "file", "layer": layer}


def hostile_report() -> dict[str, Any]:
    tree = {"name": "/", "size": 3500, "children": [
        {"name": "bin", "size": 1000, "kind": "dir", "layer": 0,
         "children": [_file(SCRIPT_NAME, 1000)]},
        {"name": QUOTES, "size": 2000, "kind": "dir", "layer": 1,
         "children": [_file("x\u202etxt.exe", 1500, 1), _file("bad\udcffbyte", 500, 1)]},
        {"name": "empty", "size": 0, "kind": "dir", "layer": 0, "children": []},
        _file("rootfile", 500),
    ]}
    image = {"label": "final image", "image": f"app:{IMG}", "digest": "sha256:" + "a" * 64,
             "platform": "linux/amd64", "user": "",
             "size": {"compressed": 1200, "uncompressed": 4096, "files": 3500},
             "efficiency": 0.9, "wasted_bytes": 10, "user_wasted_percent": 1.5,
             "dive_wasted_bytes": 10,
             "layers": [{"index": 0, "diff_id": "sha256:1", "digest": "sha256:2",
                         "compressed": 600, "uncompressed": 2048, "created_by": IMG,
                         "entries": 3, "deletions": 0, "file_bytes": 1500},
                        {"index": 1, "diff_id": "sha256:3", "digest": "sha256:4",
                         "compressed": 600, "uncompressed": 2048,
                         "created_by": "RUN echo </td></tr></table><b>x", "entries": 2,
                         "deletions": 1, "file_bytes": 2000}],
             "wasted": [{"path": "/" + SCRIPT_NAME, "by_layer": 1, "bytes": 10}],
             "largest": [{"path": "/bin/" + SCRIPT_NAME, "size": 1000, "layer": 0}],
             "tree": tree}
    return {"title": "distill build report", "images": [image],
            "stages": [{"label": SCRIPT_NAME, "base": IMG, "base_size": 100, "size": 300,
                        "seconds": 1.25,
                        "steps": [{"instruction": IMG, "added": 200, "seconds": None,
                                   "cached": True}]}],
            "final_vs_largest": f"smaller than {SCRIPT_NAME}",
            "security": [{"category": "shell", "severity": "medium\" onclick=\"x",
                          "path": "/bin/" + SCRIPT_NAME, "layer": 0, "instruction": IMG,
                          "detail": IMG}]}


class Page(HTMLParser):
    """The tags, their attributes and the text of a page, as a browser's parser sees them."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def with_class(self, cls: str) -> list[dict[str, str | None]]:
        return [a for _, a in self.tags if cls in (a.get("class") or "").split()]


def test_hostile_text_renders_as_text() -> None:
    out = render_html(hostile_report())
    page = Page(out)
    tags = {tag for tag, _ in page.tags}
    assert "script" not in tags and "img" not in tags and "b" not in tags
    assert not any(name.startswith("on") for _, attrs in page.tags for name in attrs)
    text = "".join(page.text)
    assert SCRIPT_NAME in text and IMG in text and "</td></tr></table><b>x" in text
    assert "<script" not in out.lower() and "<img" not in out.lower()


def test_attributes_keep_hostile_values_whole() -> None:
    page = Page(render_html(hostile_report()))
    paths = {a["data-path"] for a in page.with_class("tm-top")}
    assert paths == {"/bin", "/" + QUOTES, "/empty"}
    # an unknown severity is shown but never becomes a class of its own
    assert not page.with_class("onclick")


def test_invisible_and_undecodable_characters_are_shown_as_escapes() -> None:
    out = render_html(hostile_report())
    out.encode("utf-8")           # no lone surrogate left
    assert "\u202e" not in out and "x\\u202etxt.exe" in out
    assert "bad\\xffbyte" in out


def test_treemap_rule_one_top_rect_per_directory() -> None:
    page = Page(render_html(hostile_report()))
    tops = {a["data-path"]: a for a in page.with_class("tm-top")}
    assert len(tops) == 3                      # "empty" (size 0) too, as a sliver
    empty = tops["/empty"]
    assert float(empty["width"]) * float(empty["height"]) < 0.01 * 600 * 380
    assert [a["data-path"] for a in page.with_class("tm-top-file")] == ["/rootfile"]
    assert {a["data-path"] for a in page.with_class("tm-node")} >= {"/bin/" + SCRIPT_NAME}


def test_page_loads_and_runs_nothing() -> None:
    out = render_html(hostile_report())
    page = Page(out)
    policy = next(a["content"] for t, a in page.tags
                  if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    assert policy is not None and "default-src 'none'" in policy
    assert "script-src" not in policy          # default-src 'none' forbids every script
    digest = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in policy
    styles = re.findall(r"<style>(.*?)</style>", out, re.DOTALL)
    assert styles == [CSS]
    assert not [a for _, a in page.tags if "style" in a]     # a hash allows no style=""
    assert not re.search(r"(src|href)=\"(?!data:)", out)


def test_same_input_same_bytes() -> None:
    report = hostile_report()
    out = render_html(report)
    assert render_html(copy.deepcopy(report)) == out
    shuffled = copy.deepcopy(report)
    shuffled["images"][0]["tree"]["children"].reverse()
    assert render_html(shuffled) == out


def test_numbers_that_are_not_numbers_become_zero() -> None:
    report = hostile_report()
    report["images"][0]["size"]["compressed"] = '1" onload="alert(4)'
    report["images"][0]["tree"]["children"][0]["size"] = float("nan")
    report["images"][0]["layers"][0]["index"] = {"x": 1}
    page = Page(render_html(report))
    assert not any(name.startswith("on") for _, attrs in page.tags for name in attrs)
    # a size that is not a number counts as 0: the directory is a sliver, not the map
    tops = {a["data-path"]: a for a in page.with_class("tm-top")}
    assert float(tops["/bin"]["width"]) * float(tops["/bin"]["height"]) < 0.01 * 600 * 380


def test_empty_report_renders() -> None:
    out = render_html({"images": [], "stages": [], "security": []})
    assert out.startswith("<!DOCTYPE html>") and "none" in out


def test_squarify_tiles_the_box_in_proportion() -> None:
    sizes = [500.0, 250.0, 120.0, 80.0, 30.0, 15.0, 5.0]
    rects = squarify(sizes, 10, 20, 600, 400)
    assert len(rects) == len(sizes)
    total = sum(sizes)
    for size, (x, y, w, h) in zip(sizes, rects):
        assert abs(w * h - size / total * 600 * 400) < 1e-6
        assert 10 - 1e-9 <= x and x + w <= 610 + 1e-6
        assert 20 - 1e-9 <= y and y + h <= 420 + 1e-6
    for i, a in enumerate(rects):                      # no two overlap
        for b in rects[i + 1:]:
            overlap_w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
            overlap_h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
            assert overlap_w <= 1e-6 or overlap_h <= 1e-6
    assert max(max(w / h, h / w) for _, _, w, h in rects[:3]) < 3
    assert squarify([], 0, 0, 10, 10) == []


def test_squarify_survives_extreme_and_bad_sizes() -> None:
    for sizes in ([1e300, 1e-300, 1.0], [1e20, 1.0, 1.0], [5.0, 0.0, 3.0], [1.0] * 5000):
        rects = squarify(sizes, 0, 0, 600, 380)
        assert len(rects) == len(sizes)
        assert all(w >= 0 and h >= 0 for _, _, w, h in rects)
