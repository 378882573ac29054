"""The import graph is one-way: each package imports only the ones docs/architecture.md
allows; no two modules import each other, even through a chain or a function-level import;
and no module takes another's private (``_name``) definitions."""

from __future__ import annotations

import ast
from collections.abc import Iterator
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
    "report": {"image", "store", "formats", "oci", "errors"},
    "debian": {"sandbox", "errors"},
    "distroless": {"debian", "sandbox", "store", "image", "formats", "oci", "errors"},
    "ignore": {"errors"},
    "registry": {"image", "store", "formats", "oci", "errors", "__init__"},
    "builder": {"plan", "dockerfile", "image", "store", "sandbox", "formats", "oci", "errors",
              "ignore", "registry"},
    "cli": {"builder", "plan", "dockerfile", "image", "store", "sandbox", "formats", "report",
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


def test_no_relative_imports() -> None:
    """Every check here reads absolute imports; a relative one (``from ..builder import
    steps``) would pass them unseen (ruff's TID252 refuses them too)."""
    relative = [f"{path.relative_to(SRC)}:{node.lineno}"
                for path in sorted(SRC.rglob("*.py"))
                for node in ast.walk(ast.parse(path.read_text()))
                if isinstance(node, ast.ImportFrom) and node.level > 0]
    assert not relative, "relative imports: " + ", ".join(relative)


def test_import_graph_is_one_way() -> None:
    violations = []
    for path in sorted(SRC.rglob("*.py")):
        pkg = _package(path)
        if pkg in ("__init__", "__main__"):  # the top: `python -m distill` runs the CLI
            continue
        for target in _imports(path) - {pkg, "gopath", "confine", "limits", "owned", "phases"}:  # leaves
            if target not in ALLOWED.get(pkg, set()):
                violations.append(f"{path.relative_to(SRC)} imports distill.{target}")
    assert not violations, "\n".join(violations)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _runtime_imports(path: Path) -> Iterator[ast.ImportFrom | ast.Import]:
    """Every import statement that runs (at the top or in a function), leaving out those
    under ``if TYPE_CHECKING:``, which only the type checker reads."""
    tree = ast.parse(path.read_text())
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in typing_only:
            yield node


def _module_edges() -> dict[str, set[tuple[str, str]]]:
    """module -> {(imported module, imported name or "")} within distill."""
    edges: dict[str, set[tuple[str, str]]] = {}
    for name, path in MODULES.items():
        out = edges.setdefault(name, set())
        for node in _runtime_imports(path):
            if isinstance(node, ast.Import):
                out.update((a.name, "") for a in node.names if a.name in MODULES)
            elif node.level == 0 and node.module in MODULES:
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    out.add((sub, "") if sub in MODULES else (node.module, a.name))
    return edges


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []
    for root, children in graph.items():
        if root in index:
            continue
        work = [(root, iter(sorted(children)))]
        index[root] = low[root] = len(index)
        stack.append(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_two_modules_import_each_other() -> None:
    graph = {m: {target for target, _ in targets} for m, targets in _module_edges().items()}
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_check_finds_a_cycle_through_a_chain() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_takes_another_modules_private_names() -> None:
    """``from distill.x.y import _name`` outside distill.x.y; a private module
    (``distill.x._y``) is its package's own: modules outside the package leave it alone."""
    violations = []
    for name, targets in _module_edges().items():
        package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
        for target, imported in targets:
            if imported.startswith("_") and not imported.startswith("__") and target != name:
                violations.append(f"{name} imports {target}.{imported}")
            owner, _, leaf = target.rpartition(".")
            if leaf.startswith("_") and not leaf.startswith("__") and \
                    package != owner and not package.startswith(owner + "."):
                violations.append(f"{name} imports the private module {target}")
    assert not violations, "\n".join(sorted(violations))
