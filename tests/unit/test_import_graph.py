"""The import graph is one-way: each package imports only the ones DESIGN.md allows."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "distill"
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "confine": {"errors"},
    "limits": {"errors"},
    "oci": {"errors"},
    "image": {"oci", "errors"},
    "store": {"oci", "errors"},
    "formats": {"image", "store", "oci", "errors"},
    "dockerfile": {"errors"},
    "plan": {"dockerfile", "oci", "errors"},
    "sandbox": {"oci", "errors"},
    "report": {"image", "oci", "errors"},
    "debian": {"sandbox", "errors"},
    "distroless": {"debian", "sandbox", "store", "image", "formats", "oci", "errors"},
    "ignore": {"errors"},
    "registry": {"image", "store", "formats", "oci", "errors", "__init__"},
    "build": {"plan", "dockerfile", "image", "store", "sandbox", "formats", "oci", "errors",
              "ignore", "registry"},
    "cli": {"build", "plan", "dockerfile", "image", "store", "sandbox", "formats", "report",
            "oci", "errors", "ignore", "__init__", "distroless", "debian", "registry"},
}


def _package(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "distill" and node.level == 0:
            # from distill import owned (a module); from distill import __version__
            names = ["distill" if a.name.startswith("__") else f"distill.{a.name}"
                     for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "distill":
                out.add(parts[1] if len(parts) > 1 else "__init__")
    return out


def test_import_graph_is_one_way() -> None:
    violations = []
    for path in sorted(SRC.rglob("*.py")):
        pkg = _package(path)
        if pkg == "__init__":
            continue
        for target in _imports(path) - {pkg, "gopath", "confine", "limits", "owned"}:  # leaves
            if target not in ALLOWED.get(pkg, set()):
                violations.append(f"{path.relative_to(SRC)} imports distill.{target}")
    assert not violations, "\n".join(violations)
