"""distill analyze IMAGE: what an image holds and wastes, layer by layer, and what an
attacker would find in it; ``--ci`` thresholds exit 1 when crossed, as ``dive --ci``."""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from distill.errors import UsageError
from distill.image.image import Image
from distill.report.sizes import human
from distill.store.store import Store

if TYPE_CHECKING:
    from rich.console import Console

    from distill.report.analyze import Analysis
    from distill.report.security import Finding

#: dive's CI defaults (its .dive-ci): the thresholds ``--ci`` applies when given none
DIVE_MIN_EFFICIENCY = 0.9
DIVE_MAX_WASTED_RATIO = 0.1

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2,
          "g": 1000**3, "gb": 1000**3, "kib": 1024, "mib": 1024**2, "gib": 1024**3}


def size_arg(text: str) -> int:
    """``50MB``, ``1.5GiB``, ``4096``: bytes."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", text)
    if m is None or m[2].lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 50MB, 1.5GiB, 4096)")
    return int(float(m[1]) * _UNITS[m[2].lower()])


def ratio_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a ratio between 0 and 1")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "analyze", help="what an image holds: layers, file tree, wasted bytes, efficiency, "
                        "largest files, security findings",
        description="IMAGE is a name in distill's store, a registry reference (pulled if "
                    "not in the store), oci-layout://PATH[:TAG] or docker-archive://FILE.")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--json", action="store_true", help="the whole analysis as JSON on stdout")
    p.add_argument("--top", type=int, default=10, metavar="N",
                   help="largest files and wasted paths to list (default 10)")
    p.add_argument("--depth", type=int, default=2, metavar="N",
                   help="levels of the file tree to show (default 2)")
    p.add_argument("--html", metavar="FILE", help="also write the report as one HTML file")
    p.add_argument("--sbom", choices=["spdx", "cyclonedx"],
                   help="write the image's SBOM (SPDX 2.3 or CycloneDX 1.5 JSON) instead "
                        "of the report: its packages (dpkg, distroless status.d), Go "
                        "modules of its binaries, Python and npm packages")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write --json or --sbom output to FILE instead of stdout")
    p.add_argument("--platform", help="for an index, the platform to analyze "
                                      "(default: this machine's)")
    ci = p.add_argument_group("CI thresholds (exit 1 when one is crossed, as dive --ci)")
    ci.add_argument("--ci", action="store_true",
                    help="check the thresholds; with none given, dive's defaults "
                         f"(--min-efficiency {DIVE_MIN_EFFICIENCY} --max-wasted-ratio "
                         f"{DIVE_MAX_WASTED_RATIO})")
    ci.add_argument("--max-size", type=size_arg, metavar="SIZE",
                    help="largest uncompressed image size, e.g. 50MB")
    ci.add_argument("--min-efficiency", type=ratio_arg, metavar="RATIO",
                    help="lowest efficiency score (0-1), as dive's lowestEfficiency")
    ci.add_argument("--max-wasted", type=size_arg, metavar="SIZE",
                    help="most wasted bytes, as dive's highestWastedBytes")
    ci.add_argument("--max-wasted-ratio", type=ratio_arg, metavar="RATIO",
                    help="most wasted bytes over the size of every layer but the first "
                         "(0-1), as dive's highestUserWastedPercent")
    ci.add_argument("--fail-on", choices=["high", "medium", "low", "info"],
                    help="fail on a security finding of this severity or worse")
    p.set_defaults(run=run)


def open_image(store: Store, spec: str, platform: str | None) -> tuple[Image, str]:
    """The image ``spec`` names, with the name to show it by. An OCI layout or a docker
    archive is read into the store as ``distill load`` reads it (every blob checked, no
    name given: ``distill prune`` removes it)."""
    from distill.oci.platform import Platform

    wanted = Platform.from_flag(platform) or Platform.host()
    if spec.startswith("oci-layout://"):
        from distill.builder.scheduler import NamedContext
        from distill.formats.oci_layout import import_layout

        named = NamedContext.parse(spec)
        if not named.path.is_dir():
            raise UsageError(f"{spec}: {named.path} is not a directory")
        return import_layout(store, named.path, named.ref), spec
    if spec.startswith("docker-archive://"):
        from distill.formats.image_archive import load_archive

        path = Path(spec[len("docker-archive://"):])
        if not path.is_file():
            raise UsageError(f"{spec}: no such file")
        with open(path, "rb") as f:
            loaded = load_archive(store, f, str(path))
        if len(loaded) != 1:
            raise UsageError(f"{spec} holds {len(loaded)} images; analyze takes one",
                             hint="docker save one image, or load it and name it")
        return loaded[0].image, spec
    scheme, _, rest = spec.partition(":")
    if "://" in spec or (scheme in ("oci", "oci-layout", "oci-archive", "docker-archive")
                         and not re.match(r"[0-9]+/", rest)):    # not a registry's port
        raise UsageError(f"unsupported image source {spec!r}",
                         hint="a name, oci-layout://PATH[:TAG] or docker-archive://FILE")
    from distill.registry.registries import Registries
    from distill.registry.resolve import ImageSource

    console = _stderr()
    source = ImageSource(store, Registries(),
                         log=lambda line: console.print(f"# {line}", markup=False))
    return source.get(spec, wanted), spec


def _stderr() -> Console:
    from distill.cli.render import stderr_console

    return stderr_console()


@dataclass(frozen=True)
class Check:
    rule: str
    passed: bool
    detail: str


def checks(args: argparse.Namespace, analysis: Analysis, found: list[Finding]) -> list[Check]:
    """The thresholds asked for, each with whether the image passed it."""
    from distill.report.security import SEVERITIES

    min_eff, max_ratio = args.min_efficiency, args.max_wasted_ratio
    if args.ci and all(v is None for v in (args.max_size, min_eff, args.max_wasted,
                                           max_ratio, args.fail_on)):
        min_eff, max_ratio = DIVE_MIN_EFFICIENCY, DIVE_MAX_WASTED_RATIO
    out = []
    if args.max_size is not None:
        size = analysis.uncompressed
        out.append(Check("max-size", size <= args.max_size,
                         f"image {_bytes(size, args.max_size)}, "
                         f"limit {_bytes(args.max_size, size)}"))
    if min_eff is not None:
        eff = analysis.tree.efficiency
        out.append(Check("min-efficiency", eff >= min_eff,
                         f"efficiency {eff:.4f}, lowest allowed {min_eff}"))
    if args.max_wasted is not None:
        wasted = analysis.tree.wasted_bytes
        out.append(Check("max-wasted", wasted <= args.max_wasted,
                         f"wasted {_bytes(wasted, args.max_wasted)}, "
                         f"limit {_bytes(args.max_wasted, wasted)}"))
    if max_ratio is not None:
        ratio = analysis.user_wasted_percent / 100
        out.append(Check("max-wasted-ratio", ratio <= max_ratio,
                         f"wasted {ratio:.4f} of the user layers, limit {max_ratio}"))
    if args.fail_on is not None:
        worst = SEVERITIES[:SEVERITIES.index(args.fail_on) + 1]
        bad = [f for f in found if f.severity in worst]
        out.append(Check(f"fail-on {args.fail_on}", not bad,
                         f"{len(bad)} finding(s) of severity {'/'.join(worst)}"))
    return out


def _bytes(n: int, other: int) -> str:
    """``n`` for people, with its exact bytes where it would read as ``other`` does."""
    return f"{human(n)} ({n} bytes)" if human(n) == human(other) and n != other else human(n)


def run(args: argparse.Namespace) -> int:
    from distill.report.analyze import analyze
    from distill.report.inventory import collectors
    from distill.report.security import SecretsCollector, findings, findings_json
    from distill.report.text import visible_json

    if args.top < 0 or args.depth < 0:
        raise UsageError("--top and --depth take a number of 0 or more")
    if args.sbom and args.json:
        raise UsageError("--sbom and --json each write a document: give one")
    if args.output and not (args.sbom or args.json):
        raise UsageError("-o writes the --json or --sbom document; the report is printed",
                         hint="--json -o FILE, --sbom spdx -o FILE, or --html FILE")
    store = Store()
    image, name = open_image(store, args.image, args.platform)
    # the package collectors read only for an SBOM (they read every ELF binary whole)
    analysis = analyze(store, image, name,
                       [SecretsCollector(), *(collectors() if args.sbom else ())])
    found = findings(analysis)
    results = checks(args, analysis, found) if args.ci or _any_threshold(args) else []
    if args.html:
        from distill.report.html import render_html

        report = {"title": f"distill analyze {name}",
                  "images": [{"label": name, **analysis.to_json(args.top)}],
                  "stages": [], "final_vs_largest": "", "security": findings_json(found)}
        _write_file(Path(args.html), render_html(report).encode())
    if args.sbom:
        from distill.report import sbom

        subject = sbom.Subject.of(analysis)
        document = sbom.spdx(subject) if args.sbom == "spdx" else sbom.cyclonedx(subject)
        _emit(args.output, sbom.to_json(document))
    elif args.json:
        doc = analysis.to_json(args.top)
        doc["security"] = findings_json(found)
        if results:
            doc["ci"] = [vars(c) for c in results]
        # names' undecodable bytes as \xNN, as the report shows them (distill.report.text)
        _emit(args.output, json.dumps(visible_json(doc), indent=2).encode() + b"\n")
    else:
        _show(analysis, found, args)
    if results:     # on stderr when stdout carries a document: a CI log shows why
        _show_checks(results, sys.stderr if args.sbom or args.json else sys.stdout)
    return 1 if any(not c.passed for c in results) else 0


def _any_threshold(args: argparse.Namespace) -> bool:
    return any(v is not None for v in (args.max_size, args.min_efficiency, args.max_wasted,
                                       args.max_wasted_ratio, args.fail_on))


def _emit(dest: str | None, data: bytes) -> None:
    if dest is None or dest == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        _write_file(Path(dest), data, "the output")


def _write_file(path: Path, data: bytes, what: str = "the report") -> None:
    from distill.errors import os_failure

    try:
        path.write_bytes(data)
    except OSError as e:
        raise os_failure(e, f"could not write {what} to", path, store=False) from None


def _show(analysis: Analysis, found: list[Finding], args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from distill.cli.render import one_line
    from distill.report.analyze import tree_json

    out = Console(highlight=False)
    tree = analysis.tree
    out.print(Text(f"{one_line(analysis.name)}  {analysis.image.digest}  "
                   f"{analysis.image.config.platform.normalized()}", style="bold"))
    out.print(f"size: {human(analysis.uncompressed)} uncompressed, "
              f"{human(analysis.compressed)} compressed, in {len(analysis.layers)} layers; "
              f"files {human(analysis.file_bytes)}", markup=False)
    out.print(f"efficiency: {100 * tree.efficiency:.2f} %   wasted: "
              f"{human(tree.wasted_bytes)} ({analysis.user_wasted_percent:.1f} % of the "
              f"layers above the first)", markup=False)
    out.print(Text("\nlayers", style="bold"))
    layers = Table(box=None, pad_edge=False)
    for col, just in (("#", "right"), ("compressed", "right"), ("size", "right"),
                      ("instruction", "left")):
        layers.add_column(col, justify=just)  # type: ignore[arg-type]
    for layer in analysis.layers:
        layers.add_row(str(layer.index), human(layer.compressed), human(layer.uncompressed),
                       Text(one_line(layer.created_by) or "-", overflow="fold"))
    out.print(layers)
    if tree.waste:
        out.print(Text("\nwasted: overwritten or deleted by a later layer", style="bold"))
        waste = Table(box=None, pad_edge=False)
        waste.add_column("size", justify="right", no_wrap=True)
        waste.add_column("path", overflow="fold")
        waste.add_column("added in", justify="right", no_wrap=True)
        waste.add_column("removed by", justify="right", no_wrap=True)
        for w in tree.waste[:args.top]:
            waste.add_row(human(w.bytes), Text("/" + one_line(w.path)),
                          ",".join(map(str, w.added)), str(w.by))
        out.print(waste)
    out.print(Text("\nlargest files", style="bold"))
    largest = Table(box=None, pad_edge=False)
    largest.add_column("size", justify="right", no_wrap=True)
    largest.add_column("path", overflow="fold")
    largest.add_column("layer", justify="right", no_wrap=True)
    for placed in analysis.largest(args.top):
        largest.add_row(human(placed.entry.size), Text("/" + one_line(placed.entry.path)),
                        str(placed.layer))
    out.print(largest)
    if args.depth:
        out.print(Text("\nfile tree", style="bold"))
        for line in _tree_lines(tree_json(analysis.tree), args.depth, max(args.top, 1)):
            out.print(Text(line))
    _show_findings(out, found)


def _tree_lines(node: dict[str, Any], depth: int, most: int, indent: str = "") -> list[str]:
    """The tree to ``depth`` levels, the ``most`` largest entries of each directory."""
    from distill.cli.render import one_line

    lines = []
    children = sorted(node.get("children", []), key=lambda c: (-c["size"], c["name"]))
    for child in children[:most]:
        mark = "/" if child.get("kind") == "dir" else \
            f" -> {one_line(child['link'])}" if child.get("link") else ""
        lines.append(f"{human(child['size']):>10}  {indent}{one_line(child['name'])}{mark}")
        if depth > 1 and child.get("children"):
            lines += _tree_lines(child, depth - 1, most, indent + "  ")
    if len(children) > most:
        rest = children[most:]
        lines.append(f"{human(sum(c['size'] for c in rest)):>10}  {indent}"
                     f"... {len(rest)} more")
    return lines


def _show_findings(out: Console, found: list[Finding]) -> None:
    from rich.table import Table
    from rich.text import Text

    from distill.cli.render import one_line

    if not found:
        out.print("\nsecurity: no findings", markup=False)
        return
    out.print(Text(f"\nsecurity: {len(found)} findings", style="bold"))
    table = Table(box=None, pad_edge=False)
    for col in ("severity", "category", "path", "layer", "detail"):
        table.add_column(col, overflow="fold", no_wrap=col in ("severity", "layer"))
    for f in found:
        table.add_row(f.severity, f.category, Text(one_line(f.path) or "-"),
                      "" if f.layer is None else str(f.layer),
                      Text(one_line(f.detail), overflow="fold"))
    out.print(table)


def _show_checks(results: list[Check], out: TextIO) -> None:
    for c in results:
        print(f"  {'PASS' if c.passed else 'FAIL'}: {c.rule}: {c.detail}", file=out)
    failed = sum(not c.passed for c in results)
    print(f"Result: {'FAIL' if failed else 'PASS'} [{len(results) - failed} passed, "
          f"{failed} failed]", file=out)
