"""What software an image's final file tree holds: one ``Component`` per package found,
with its package URL and where it was found (path, layer).

It reads what the collectors (``collectors()``) made of the files the final image shows
(``FileTree.found_by``), so a package a later layer deleted is not listed. The SBOM
writers (``distill.report.sbom``) render the components as SPDX or CycloneDX.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace

from packageurl import PackageURL

from distill.report.filetree import FileTree
from distill.report.goinfo import GoBuildInfo, GoCollector, GoModule
from distill.report.layerfiles import Collector
from distill.report.osrelease import PATHS, OsRelease, OsReleaseCollector
from distill.report.packages import (
    DpkgCollector,
    Locked,
    NpmCollector,
    NpmLockCollector,
    Package,
    PythonCollector,
)

LIBRARY, APPLICATION, OPERATING_SYSTEM = "library", "application", "operating-system"
DEVEL = "(devel)"

_LICENSE_WORD = r"(?:[A-Za-z0-9.\-]+\+?|LicenseRef-[A-Za-z0-9.\-]+)"
#: the shape of an SPDX license expression (ids are not checked against the list)
_EXPRESSION = re.compile(rf"\(*{_LICENSE_WORD}\)*"
                         rf"(?:\s+(?:AND|OR|WITH)\s+\(*{_LICENSE_WORD}\)*)*")


def collectors() -> list[Collector]:
    """Fresh collectors for everything the inventory reads; pass them to ``analyze``."""
    return [DpkgCollector(), PythonCollector(), NpmCollector(), NpmLockCollector(),
            GoCollector(), OsReleaseCollector()]


@dataclass(frozen=True)
class Component:
    kind: str                 # "deb", "pypi", "npm", "golang", "os"
    type: str                 # LIBRARY, APPLICATION, OPERATING_SYSTEM
    name: str
    version: str
    purl: str                 # "" when there is none
    path: str                 # the file it was read from, relative to the root
    layer: int                # the layer that put that file there
    license: str = ""
    license_is_spdx: bool = False
    source: str = ""          # deb: "glibc 2.36-9", the source package it was built from
    description: str = ""
    #: more facts, as (name, value), for CycloneDX properties and SPDX comments
    properties: tuple[tuple[str, str], ...] = ()
    #: indexes into the inventory of the components this one was built with
    depends_on: tuple[int, ...] = ()

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.kind, self.name, self.version, self.path)


def spdx_expression(text: str) -> bool:
    """``text`` has the shape of an SPDX license expression (npm's ``UNLICENSED``, a
    proprietary package, does not)."""
    return (bool(text) and len(text) <= 500 and text.upper() != "UNLICENSED"
            and _EXPRESSION.fullmatch(text) is not None)


def os_release(tree: FileTree) -> tuple[OsRelease, str, int] | None:
    """The image's os-release, the file it came from and that file's layer."""
    found = tree.found_by("os-release")
    for path in PATHS:
        layer, value = found.get(path, (0, None))
        if isinstance(value, OsRelease):
            return value, path, layer
    return None


def inventory(tree: FileTree) -> list[Component]:
    """Every package the final image shows, sorted, each once; a component's
    ``depends_on`` indexes this list."""
    os_info = os_release(tree)
    items: list[tuple[Component, list[Component]]] = []
    if os_info is not None:
        release, path, layer = os_info
        items.append((Component("os", OPERATING_SYSTEM, release.id, release.version_id, "",
                                path, layer, description=release.pretty_name), []))
    items.extend((c, []) for c in _debs(tree, os_info[0] if os_info else None))
    items.extend((c, []) for c in _pythons(tree))
    items.extend((c, []) for c in _npms(tree))
    items.extend(_gos(tree))
    return _ordered(items)


def _ordered(items: list[tuple[Component, list[Component]]]) -> list[Component]:
    unique: dict[tuple[str, str, str, str], tuple[Component, list[Component]]] = {}
    for component, deps in items:
        for dep in deps:
            unique.setdefault(dep.key, (dep, []))
        unique.setdefault(component.key, (component, deps))
    keys = sorted(unique, key=lambda k: (unique[k][0].type != OPERATING_SYSTEM, k))
    index = {k: i for i, k in enumerate(keys)}
    out = []
    for k in keys:
        component, deps = unique[k]
        edges = tuple(sorted({index[d.key] for d in deps}))
        out.append(replace(component, depends_on=edges) if edges else component)
    return out


def _purl(kind: str, name: str, version: str, namespace: str | None = None,
          qualifiers: dict[str, str] | None = None) -> str:
    try:
        return PackageURL(type=kind, namespace=namespace, name=name,
                          version=version or None,
                          qualifiers={k: v for k, v in (qualifiers or {}).items() if v}
                          ).to_string()
    except ValueError:
        return ""


def _packages(tree: FileTree, collector: str) -> Iterator[tuple[str, int, Package]]:
    found = tree.found_by(collector)
    for path in sorted(found):
        layer, value = found[path]
        for package in value if isinstance(value, tuple) else (value,):
            if isinstance(package, Package):
                yield path, layer, package


def _debs(tree: FileTree, release: OsRelease | None) -> Iterator[Component]:
    vendor = release.id if release is not None else "debian"
    distro = release.distro if release is not None else ""
    seen: set[tuple[str, str]] = set()
    # status.d (distroless) sorts after status: the full database wins a duplicate
    for path, layer, p in _packages(tree, "dpkg"):
        if (p.name, p.arch) in seen:
            continue
        seen.add((p.name, p.arch))
        purl = _purl("deb", p.name, p.version, vendor, {"arch": p.arch, "distro": distro})
        props = (("deb:architecture", p.arch),) if p.arch else ()
        source = f"{p.source} {p.source_version}".strip() if p.source else ""
        yield Component("deb", LIBRARY, p.name, p.version, purl, path, layer,
                        source=source, properties=props)


def _pythons(tree: FileTree) -> Iterator[Component]:
    for path, layer, p in _packages(tree, "python"):
        yield Component("pypi", LIBRARY, p.name, p.version, _purl("pypi", p.name, p.version),
                        path, layer, p.license, p.license_is_spdx and spdx_expression(p.license))


def _npm_component(path: str, layer: int, p: Package) -> Component:
    scope, slash, name = p.name.rpartition("/")
    purl = _purl("npm", name if slash else p.name, p.version, scope or None)
    return Component("npm", LIBRARY, p.name, p.version, purl, path, layer, p.license,
                     spdx_expression(p.license))


def _npms(tree: FileTree) -> Iterator[Component]:
    installed = set()
    for path, layer, p in _packages(tree, "npm"):
        installed.add(path.rpartition("/")[0])
        yield _npm_component(path, layer, p)
    found = tree.found_by("npm-lock")
    for path in sorted(found):
        layer, value = found[path]
        for locked in value if isinstance(value, tuple) else ():
            if not isinstance(locked, Locked) or locked.directory in installed:
                continue
            placed = tree.files.get(locked.directory)
            if placed is None or placed.entry.kind != "dir":
                continue             # locked, but not installed in this image
            installed.add(locked.directory)
            yield _npm_component(path, layer, locked.package)


def _go_module(module: GoModule, path: str, layer: int) -> Component:
    """A dependency as built: a module replacement with a version is what went in; a
    local directory's replacement is recorded beside the module it stands in for."""
    props: list[tuple[str, str]] = []
    name, version, checksum = module.path, module.version, module.sum
    rep = module.replace
    if rep is not None and rep.version not in ("", DEVEL) and not rep.path.startswith(
            (".", "/")):
        props.append(("golang:replaces", f"{name} {version}".strip()))
        name, version, checksum = rep.path, rep.version, rep.sum
    elif rep is not None:
        props.append(("golang:replaced-by", f"{rep.path} {rep.version}".strip()))
    if checksum:
        props.append(("golang:sum", checksum))
    purl = _purl("golang", name, "" if version == DEVEL else version)
    return Component("golang", LIBRARY, name, version, purl, path, layer,
                     properties=tuple(props))


def _gos(tree: FileTree) -> Iterator[tuple[Component, list[Component]]]:
    found = tree.found_by("go")
    for path in sorted(found):
        layer, info = found[path]
        if not isinstance(info, GoBuildInfo):
            continue
        deps = [_go_module(m, path, layer) for m in info.deps]
        go_version = info.go_version.removeprefix("go").split(" ")[0]
        if re.fullmatch(r"[0-9][0-9A-Za-z.\-]*", go_version):
            deps.append(Component("golang", LIBRARY, "stdlib", go_version,
                                  _purl("golang", "stdlib", go_version), path, layer))
        props = [("golang:go-version", info.go_version)]
        props.extend((f"golang:build:{k}", v) for k, v in info.settings
                     if k in ("GOOS", "GOARCH", "CGO_ENABLED", "vcs.revision"))
        main = info.main
        if main is not None:
            app = _go_module(main, path, layer)
            app = replace(app, type=APPLICATION, properties=app.properties + tuple(props))
        else:
            name = info.path or path.rpartition("/")[2]
            app = Component("golang", APPLICATION, name, "", "", path, layer,
                            properties=tuple(props))
        yield app, deps
