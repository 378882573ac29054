"""One self-contained HTML page for a build or an analysis: the images side by side (a
treemap of each image's files, its layers, wasted and largest files), a bar per stage (its
base and what its steps added), the security findings.

The page has no JavaScript and loads nothing: the treemaps and bars are SVG computed here,
and a Content-Security-Policy allows only the page's own stylesheet (by its hash) and
``data:`` images. Every string of the input is hostile (paths and instructions come from
Dockerfiles and images): it is escaped for HTML, with control, bidirectional-override and
lone-surrogate characters shown as escapes; every number is coerced to a finite number.

Treemap rule (tests count on it): at the first level there is one ``rect.tm-top`` per
top-level directory, with ``data-path="/name"`` (an empty one is a sliver of
``EMPTY_SHARE`` of the area, its title saying 0 B); a top-level non-directory of size > 0
gets a ``rect.tm-top-file``; other entries of size 0 are left out. Deeper levels are
``rect.tm-node``, drawn only where there is room.
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

from distill.report.sizes import human
from distill.report.text import visible

Rect = tuple[float, float, float, float]

TREEMAP_W, TREEMAP_H = 600.0, 380.0
TREEMAP_DEPTH = 3          # levels drawn: top-level entries and two below them
MAX_ROWS = 50             # of a list that may be long (the wasted files)
EMPTY_SHARE = 0.002        # of the map's area, for a top-level directory of no bytes
STAGE_W, STAGE_ROW, STAGE_LABEL = 800.0, 30.0, 150.0
SEVERITIES = ("critical", "high", "medium", "low", "info")

CSS = """\
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#f7f7f7}
h1{font-size:1.4em;margin:0 0 .5em}h2{font-size:1.15em;margin:1.5em 0 .5em}
h3{font-size:1em;margin:1em 0 .3em}
.images{display:grid;grid-template-columns:repeat(auto-fit,minmax(440px,1fr));gap:1.5em}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:1em;min-width:0}
.card h2{margin-top:0}.stages,.security{margin-top:1.5em}.stage-chart{max-width:800px}.treemap{max-width:760px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.1em 1em;margin:0}
dt{color:#666}dd{margin:0;overflow-wrap:anywhere}
table{border-collapse:collapse;width:100%;font-size:.9em;background:#fff}
th,td{border-bottom:1px solid #e5e5e5;padding:.25em .5em;text-align:left;vertical-align:top}
.n{text-align:right;white-space:nowrap}
code{font:12px ui-monospace,monospace;white-space:pre-wrap;overflow-wrap:anywhere}
td code{display:block;max-height:7.5em;overflow:auto}
table.security td:nth-child(3){min-width:16em}table.security td:nth-child(5){max-width:28em}
svg{display:block;width:100%;height:auto}
svg text{font:11px system-ui,sans-serif;fill:#111;pointer-events:none}
.treemap rect{stroke:#fff;stroke-width:1}
.muted{color:#777}.verdict{font-weight:600}
.sev-critical,.sev-high{color:#b00020;font-weight:600}.sev-medium{color:#a65300}
"""

# -- text and numbers: every string is hostile, shown with distill.report.text.visible --

def _e(value: object) -> str:
    """``value`` as HTML text or a quoted attribute's value."""
    text = value if isinstance(value, str) else "" if value is None else str(value)
    return html.escape(visible(text, lines=True), quote=True)


def _num(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    number = float(value)
    return number if math.isfinite(number) else 0.0


def _int(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return int(_num(value))


def _size(value: object) -> str:
    """A size; a negative one was never measured (a layer no output compressed)."""
    n = _int(value)
    return "-" if n < 0 else _e(human(n))


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _f(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")


# -- treemap ----------------------------------------------------------------------------

def squarify(sizes: Sequence[float], x: float, y: float, w: float, h: float) -> list[Rect]:
    """Rectangles tiling (x, y, w, h), one per size (> 0, largest first for the best
    aspect ratios), each with an area proportional to its size (Bruls, Huizing, van Wijk:
    fill a row along the short side while it makes the worst aspect ratio no worse)."""
    total = sum(sizes)
    if total <= 0 or w <= 0 or h <= 0:
        return [(x, y, 0.0, 0.0) for _ in sizes]
    areas = [s * w * h / total for s in sizes]
    out: list[Rect] = []
    i = 0
    while i < len(areas):
        side = min(w, h)
        if side <= 0 or areas[i] <= 0:       # rounding left no room, or a size was not > 0
            out.extend((x, y, 0.0, 0.0) for _ in areas[i:])
            break
        row_sum, row_min, row_max, j = areas[i], areas[i], areas[i], i + 1
        worst = _worst(row_sum, row_min, row_max, side)
        while j < len(areas):
            a = areas[j]
            candidate = _worst(row_sum + a, min(row_min, a), max(row_max, a), side)
            if candidate > worst:
                break
            row_sum, row_min, row_max, worst, j = (row_sum + a, min(row_min, a),
                                                   max(row_max, a), candidate, j + 1)
        thick = row_sum / side
        offset = 0.0
        for a in areas[i:j]:
            length = a / thick
            out.append((x, y + offset, thick, length) if w >= h
                       else (x + offset, y, length, thick))
            offset += length
        if w >= h:
            x, w = x + thick, max(w - thick, 0.0)
        else:
            y, h = y + thick, max(h - thick, 0.0)
        i = j
    return out


def _worst(total: float, smallest: float, largest: float, side: float) -> float:
    """The worst aspect ratio of a row of areas laid along ``side``."""
    if smallest <= 0:
        return math.inf
    return max(side * side * largest / (total * total), total * total / (side * side * smallest))


def _treemap_nodes(children: object, parent: str, box: Rect, depth: int, hue: int,
                   out: list[str]) -> None:
    items = sorted(((_num(c.get("size")), str(c.get("name", "")), c) for c in _list(children)),
                   key=lambda t: (-t[0], t[1]))
    if depth == 0:
        # every top-level directory has a rectangle, an empty one a sliver (its title
        # says 0 B): the map shows the image's whole first level
        floor = max(sum(t[0] for t in items), 1.0) * EMPTY_SHARE
        items = [t for t in items if t[0] > 0 or t[2].get("kind") == "dir"]
        weights = [max(t[0], floor) for t in items]
    else:
        items = [t for t in items if t[0] > 0]
        weights = [t[0] for t in items]
    order = sorted(range(len(items)), key=lambda i: (-weights[i], items[i][1]))
    items = [items[i] for i in order]
    rects = squarify([weights[i] for i in order], *box)
    for index, ((size, name, child), (x, y, w, h)) in enumerate(zip(items, rects)):
        if depth and (w < 3 or h < 3):
            continue
        path = f"{parent}/{name}"
        is_dir = child.get("kind") == "dir"
        tint = (index * 47) % 360 if depth == 0 else hue
        cls = "tm-node" if depth else "tm-top" if is_dir else "tm-top-file"
        light = min(62 + depth * 9, 90) if is_dir else 88
        out.append(f'<rect class="{cls}" data-path="{_e(path)}" x="{_f(x)}" y="{_f(y)}" '
                   f'width="{_f(w)}" height="{_f(h)}" fill="hsl({tint},45%,{light}%)">'
                   f"<title>{_e(path)} \u2014 {_size(size)}</title></rect>")
        if is_dir and depth + 1 < TREEMAP_DEPTH and w > 30 and h > 34:
            _treemap_nodes(child.get("children"), path, (x + 2, y + 15, w - 4, h - 17),
                           depth + 1, tint, out)
        if w > 30 and h > 13:
            out.append(f'<svg x="{_f(x)}" y="{_f(y)}" width="{_f(w)}" height="{_f(h)}">'
                       f'<text x="3" y="11">{_e(name)} {_size(size)}</text></svg>')


def treemap_svg(tree: dict[str, Any], label: str) -> str:
    out: list[str] = []
    _treemap_nodes(tree.get("children"), "", (0.0, 0.0, TREEMAP_W, TREEMAP_H), 0, 0, out)
    if not out:
        out.append('<text x="10" y="20">no file bytes</text>')
    return (f'<svg class="treemap" viewBox="0 0 {_f(TREEMAP_W)} {_f(TREEMAP_H)}" role="img" '
            f'aria-label="files of {_e(label)} by size">{"".join(out)}</svg>')


# -- sections ---------------------------------------------------------------------------

def _table(cls: str, head: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Cells are HTML already; a header starting with "#" is numeric (right-aligned)."""
    numeric = [h.startswith("#") for h in head]
    th = "".join(f'<th{" class=n" if n else ""}>{_e(h.lstrip("#"))}</th>'
                 for h, n in zip(head, numeric))
    body = "".join("<tr>" + "".join(f'<td{" class=n" if n else ""}>{cell}</td>'
                                    for cell, n in zip(row, numeric)) + "</tr>"
                   for row in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def _image_card(image: dict[str, Any]) -> str:
    size = _dict(image.get("size"))
    label = str(image.get("label") or image.get("image") or "image")
    wasted_line = (f"{_size(image.get('wasted_bytes'))} "
                   f"({_num(image.get('user_wasted_percent')):.1f} % of the upper layers)")
    facts = [("image", _e(image.get("image"))),
             ("digest", f"<code>{_e(image.get('digest'))}</code>"),
             ("platform", _e(image.get("platform"))), ("user", _e(image.get("user") or "root")),
             ("compressed", _size(size.get("compressed"))),
             ("uncompressed", _size(size.get("uncompressed"))),
             ("file bytes", _size(size.get("files"))),
             ("efficiency", f"{_num(image.get('efficiency')) * 100:.1f} %"),
             ("wasted", wasted_line)]
    layers = _table("layers", ["#layer", "#compressed", "#uncompressed", "#entries",
                               "#deleted", "instruction"],
                    ([str(_int(la.get("index"))), _size(la.get("compressed")),
                      _size(la.get("uncompressed")), str(_int(la.get("entries"))),
                      str(_int(la.get("deletions"))), f"<code>{_e(la.get('created_by'))}</code>"]
                     for la in _list(image.get("layers"))))
    wasted = _list(image.get("wasted"))
    largest = _list(image.get("largest"))
    return "".join([
        f'<section class="card image"><h2>{_e(label)}</h2><dl>',
        "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in facts), "</dl>",
        "<h3>files by size</h3>", treemap_svg(_dict(image.get("tree")), label),
        "<h3>layers</h3>", layers,
        "<h3>wasted files</h3>",
        _table("wasted", ["path", "#replaced by layer", "#bytes"],
               ([f"<code>{_e(w.get('path'))}</code>", str(_int(w.get("by_layer"))),
                 _size(w.get("bytes"))] for w in wasted[:MAX_ROWS]))
        if wasted else '<p class="muted">none</p>',
        f'<p class="muted">and {len(wasted) - MAX_ROWS} more</p>'
        if len(wasted) > MAX_ROWS else "",
        "<h3>largest files</h3>",
        _table("largest", ["path", "#size", "#layer"],
               ([f"<code>{_e(f.get('path'))}</code>", _size(f.get("size")),
                 str(_int(f.get("layer")))] for f in largest))
        if largest else '<p class="muted">none</p>',
        "</section>"])


def _header(title: str, images: list[dict[str, Any]]) -> str:
    def sizes(image: dict[str, Any]) -> str:
        size = _dict(image.get("size"))
        packed = "" if _int(size.get("compressed")) < 0 else \
            f"{_size(size.get('compressed'))} compressed, "    # a stage no output ships
        return f"{packed}{_size(size.get('uncompressed'))} uncompressed"

    lines = "".join(
        f"<p><strong>{_e(i.get('label'))}</strong> <code>{_e(i.get('image'))}</code> "
        f"<code class=muted>{_e(i.get('digest'))}</code> \u2014 {sizes(i)}</p>"
        for i in images)
    return f"<header><h1>{_e(title)}</h1>{lines}</header>"


def _stages(stages: list[dict[str, Any]], verdict: str) -> str:
    if not stages:
        return ""
    top = max((max(_num(s.get("size")), _num(s.get("base_size"))) for s in stages), default=0)
    scale = (STAGE_W - STAGE_LABEL - 260) / top if top > 0 else 0.0
    rows = []
    for i, stage in enumerate(stages):
        y = 6 + i * STAGE_ROW
        base, size = max(_num(stage.get("base_size")), 0), max(_num(stage.get("size")), 0)
        added = max(size - base, 0)
        x_added = STAGE_LABEL + base * scale
        rows.append(
            f'<g class="stage-bar"><svg x="0" y="{_f(y)}" width="{_f(STAGE_LABEL - 6)}" '
            f'height="{_f(STAGE_ROW)}"><text x="0" y="16">{_e(stage.get("label"))}</text></svg>'
            f'<rect x="{_f(STAGE_LABEL)}" y="{_f(y)}" width="{_f(base * scale)}" height="20" '
            f'fill="#b8b8b8"><title>base {_e(stage.get("base"))}: {_size(base)}</title></rect>'
            f'<rect x="{_f(x_added)}" y="{_f(y)}" width="{_f(added * scale)}" height="20" '
            f'fill="#4a7fb5"><title>added by its steps: {_size(added)}</title></rect>'
            f'<text x="{_f(x_added + added * scale + 6)}" y="{_f(y + 15)}">{_size(size)} '
            f'(base {_size(base)} + {_size(added)}), {_num(stage.get("seconds")):.1f} s</text>'
            "</g>")
    height = 12 + len(stages) * STAGE_ROW
    steps = "".join(
        f"<details><summary>steps of {_e(stage.get('label'))} "
        f"(from <code>{_e(stage.get('base'))}</code>)</summary>"
        + _table("steps", ["instruction", "#added", "#seconds", "cached"],
                 ([f"<code>{_e(step.get('instruction'))}</code>", _size(step.get("added")),
                   "" if step.get("seconds") is None else f"{_num(step.get('seconds')):.1f}",
                   "yes" if step.get("cached") is True else "no"]
                  for step in _list(stage.get("steps"))))
        + "</details>" for stage in stages)
    return ('<section class="card stages"><h2>stages</h2>'
            + (f'<p class="verdict">{_e(verdict)}</p>' if verdict else "")
            + f'<svg class="stage-chart" viewBox="0 0 {_f(STAGE_W)} {_f(height)}" role="img" '
            f'aria-label="size of each stage: its base in grey, what it added in blue">'
            f'{"".join(rows)}</svg>{steps}</section>')


def _security(findings: list[dict[str, Any]]) -> str:
    def severity(finding: dict[str, Any]) -> str:
        value = str(finding.get("severity", "")).lower()
        return f'<span class="sev-{value if value in SEVERITIES else "other"}">{_e(value)}</span>'

    table = _table("security", ["severity", "category", "path", "#layer", "instruction",
                                "detail"],
                   ([severity(f), _e(f.get("category")), f"<code>{_e(f.get('path'))}</code>",
                     "" if f.get("layer") is None else str(_int(f.get("layer"))),
                     f"<code>{_e(f.get('instruction'))}</code>",
                     _e(f.get("detail"))] for f in findings))
    return (f'<section class="card security"><h2>security findings</h2>'
            f'{table if findings else "<p class=muted>none</p>"}</section>')


def render_html(report: dict[str, Any]) -> str:
    """The page for ``report``: ``title``; ``images`` (one or two ``Analysis.to_json()``
    dicts with a ``label``: the final image, the largest stage); ``stages`` (``label``,
    ``base``, ``base_size``, ``size``, ``seconds``, ``steps``); ``final_vs_largest`` (a
    sentence); ``security`` (findings). The same input gives the same bytes."""
    images = _list(report.get("images"))
    title = str(report.get("title") or "distill build report")
    names = ", ".join(str(i.get("image", "")) for i in images)
    style_hash = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
    policy = (f"default-src 'none'; style-src 'sha256-{style_hash}'; img-src data:; "
              "base-uri 'none'; form-action 'none'")
    return "".join([
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_e(policy)}">',
        '<meta name="referrer" content="no-referrer">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        '<link rel="icon" href="data:,">',
        f"<title>{_e(title)}: {_e(names)}</title><style>{CSS}</style></head><body>",
        _header(title, images),
        f'<div class="images">{"".join(_image_card(i) for i in images)}</div>',
        _stages(_list(report.get("stages")), str(report.get("final_vs_largest") or "")),
        _security(_list(report.get("security"))),
        "</body></html>\n"])
