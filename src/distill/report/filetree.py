"""Layers stacked into the image's file tree, and what the stacking wasted.

``stack`` applies each layer's deletions, opaque directories and entries in turn, as a
runtime would (the OCI image spec, "Applying Changesets"), keeping which layer put each
visible path there. Two measures of waste come out of it:

* ``waste``: bytes of regular files a layer holds that the final image does not show,
  because a later layer overwrote or deleted them (what a smaller build saves), one
  entry per overwritten file or deleted path.
* dive's efficiency score and its "wasted bytes", computed as dive computes them
  (wagoodman/dive, ``filetree/efficiency.go``): per path, the sum of its sizes in every
  layer that touches it (a whiteout counts the size of the directory it deletes, 0 for
  a file) against the smallest of them; dive's wasted bytes sum every path a second
  layer touches, the surviving copy included, so an overwritten file counts twice.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

from distill.report.layerfiles import Entry, LayerFiles


@dataclass(frozen=True)
class Placed:
    entry: Entry
    layer: int        # index of the layer that put it there


@dataclass(frozen=True)
class Waste:
    """Bytes a layer holds that a later one (``by``) overwrote or deleted at ``path``
    (a deleted directory is one entry)."""

    path: str
    by: int          # the layer that overwrote or deleted it
    bytes: int
    added: tuple[int, ...] = ()    # the layers whose files these bytes were


@dataclass
class FileTree:
    """The final view: every visible path (directories too) with its entry and layer."""

    files: dict[str, Placed] = field(default_factory=dict)
    children: dict[str, set[str]] = field(default_factory=dict)
    #: path -> collector -> (layer, value), for what is visible in the final image
    found: dict[str, dict[str, tuple[int, object]]] = field(default_factory=dict)
    #: a regular file's path -> the paths of the hard links to it
    links: dict[str, set[str]] = field(default_factory=dict)
    #: directory -> where it is once symlinks are followed; cleared when the view changes
    _real_parents: dict[str, str] = field(default_factory=dict, repr=False)
    efficiency: float = 1.0
    dive_wasted_bytes: int = 0
    waste: list[Waste] = field(default_factory=list)

    @property
    def wasted_bytes(self) -> int:
        return sum(w.bytes for w in self.waste)

    def regular_files(self) -> Iterator[Placed]:
        return (p for p in self.files.values() if p.entry.kind == "file")

    def found_by(self, collector: str) -> dict[str, tuple[int, object]]:
        return {path: by[collector] for path, by in self.found.items() if collector in by}

    def dir_sizes(self) -> dict[str, int]:
        """Bytes of regular files under each directory ("" is the root): each directory
        adds its total to its parent's once, deepest first (linear in the paths)."""
        sizes: dict[str, int] = {"": 0}
        for placed in self.regular_files():
            parent = placed.entry.path.rpartition("/")[0]
            sizes[parent] = sizes.get(parent, 0) + placed.entry.size
        for path in sorted((p for p, placed in self.files.items()
                            if placed.entry.kind == "dir"), key=lambda p: -p.count("/")):
            sizes.setdefault(path, 0)
            if path:
                parent = path.rpartition("/")[0]
                sizes[parent] = sizes.get(parent, 0) + sizes[path]
        return sizes

    # -- stacking ----------------------------------------------------------------
    def real(self, path: str) -> str:
        """``path`` with symlinks among its parent directories followed inside the view,
        as a runtime applying the layer does (a symlink's target is read as if chrooted;
        ``..`` stops at the root); the last component is kept as it is. At most
        MAX_HOPS links and MAX_STEPS components are walked (a hostile link that expands
        to thousands of components costs no more than that)."""
        parent, _, name = path.rpartition("/")
        if not parent:
            return path
        real_parent = self._real_parents.get(parent)
        if real_parent is None:
            real_parent = self._real_parents[parent] = self._resolve(parent)
        return f"{real_parent}/{name}" if real_parent else name

    def _resolve(self, directory: str) -> str:
        done = [""]                     # done[k]: the first k components, joined
        todo = deque(directory.split("/"))
        hops = steps = 0
        while todo and steps < MAX_STEPS:
            steps += 1
            part = todo.popleft()
            if part in ("", "."):
                continue
            if part == "..":
                if len(done) > 1:
                    done.pop()
                continue
            here = f"{done[-1]}/{part}" if len(done) > 1 else part
            placed = self.files.get(here)
            if placed is not None and placed.entry.kind == "symlink" and hops < MAX_HOPS:
                hops += 1
                target = placed.entry.link
                if target.startswith("/"):
                    done = [""]
                todo.extendleft(reversed(target.split("/")))
                continue
            done.append(here)
        rest = [p for p in todo if p not in ("", ".", "..")]     # past the budget: as is
        return "/".join([done[-1], *rest]) if len(done) > 1 else "/".join(rest)

    def _remove(self, path: str, layer: int) -> None:
        """Remove ``path`` and everything below it, counting the file bytes lost."""
        lost = 0
        added: set[int] = set()
        todo = [path]
        while todo:
            current = todo.pop()
            placed = self.files.pop(current, None)
            found = self.found.pop(current, None)
            if placed is not None:
                entry = placed.entry
                if entry.kind == "symlink":       # where paths lead may change
                    self._real_parents.clear()
                if entry.kind == "hardlink":
                    self.links.get(entry.link, set()).discard(current)
                elif entry.kind == "file" and self.links.get(current):
                    self._promote(entry, found)     # its content stays, under another name
                elif entry.kind == "file":
                    lost += entry.size
                    added.add(placed.layer)
                parent = current.rpartition("/")[0]
                siblings = self.children.get(parent)
                if siblings is not None:
                    siblings.discard(current)
            todo.extend(self.children.pop(current, ()))
        if lost:
            self.waste.append(Waste(path, layer, lost, tuple(sorted(added))))

    def _promote(self, gone: Entry, found: dict[str, tuple[int, object]] | None) -> None:
        """``gone``, a file with hard links, leaves: one link becomes the file (with its
        bytes), the others its links."""
        heirs = sorted(self.links.pop(gone.path))
        heir = self.files[heirs[0]]
        self.files[heirs[0]] = Placed(replace(heir.entry, kind="file", size=gone.size,
                                              link=""), heir.layer)
        for other in heirs[1:]:
            placed = self.files[other]
            self.files[other] = Placed(replace(placed.entry, link=heirs[0]), placed.layer)
        if heirs[1:]:
            self.links[heirs[0]] = set(heirs[1:])
        if found is not None:
            self.found[heirs[0]] = found

    def _put(self, entry: Entry, layer: int) -> None:
        if entry.kind == "hardlink":
            target = self.files.get(entry.link)
            if target is not None and target.entry.kind == "hardlink":
                target = self.files.get(target.entry.link)   # a link to a link: its file
            if target is not None and target.entry.kind == "file" \
                    and target.entry.path != entry.path:
                entry = replace(entry, link=target.entry.path)
        old = self.files.get(entry.path)
        if entry.kind == "symlink" or (old is not None and old.entry.kind == "symlink"):
            self._real_parents.clear()
        if old is not None:
            if old.entry.kind == "dir" and entry.kind == "dir":
                self.files[entry.path] = Placed(entry, layer)
                return
            self._remove(entry.path, layer)
        linked = self.files.get(entry.link) if entry.kind == "hardlink" else None
        if linked is not None and linked.entry.kind == "file":
            self.links.setdefault(entry.link, set()).add(entry.path)
        self.files[entry.path] = Placed(entry, layer)
        path = entry.path
        while path:     # parents a tar may leave implicit
            parent = path.rpartition("/")[0]
            self.children.setdefault(parent, set()).add(path)
            if parent in self.files or not parent:
                break
            self.files[parent] = Placed(Entry(parent, "dir", 0, 0o755), layer)
            path = parent


#: symlinks followed in one path before giving up (Linux's MAXSYMLINKS)
MAX_HOPS = 40
#: path components walked in one path at most (PATH_MAX allows 2048 of them)
MAX_STEPS = 4096


def stack(layers: Sequence[LayerFiles]) -> FileTree:
    tree = FileTree()
    for index, layer in enumerate(layers):
        for path in layer.opaque:
            for child in list(tree.children.get(tree.real(path + "/x").rpartition("/")[0],
                                                ())):
                tree._remove(child, index)
        for path in dict.fromkeys(layer.deleted):
            tree._remove(tree.real(path), index)
        moved: dict[str, str] = {}
        for entry in layer.entries:
            where = tree.real(entry.path)
            if where != entry.path:
                moved[entry.path] = where
                entry = replace(entry, path=where)
            if entry.kind == "hardlink":
                entry = replace(entry, link=moved.get(entry.link) or tree.real(entry.link))
            tree._put(entry, index)
        for (name, path), value in layer.found.items():
            path = moved.get(path, path)
            placed = tree.files.get(path)
            if placed is not None and placed.layer == index:
                tree.found.setdefault(path, {})[name] = (index, value)
    tree.waste.sort(key=lambda w: (-w.bytes, w.path))
    _dive_efficiency(tree, layers)
    return tree


def _leaves(layer: LayerFiles) -> list[Entry]:
    """A layer's entries that are leaves of its own tree (dive visits only those)."""
    parents = set()
    for entry in layer.entries:
        path = entry.path
        while "/" in path:
            path = path.rpartition("/")[0]
            if path in parents:
                break
            parents.add(path)
    return [e for e in layer.entries if e.path not in parents]


def _dive_efficiency(tree: FileTree, layers: Sequence[LayerFiles]) -> None:
    cumulative: dict[str, int] = {}
    smallest: dict[str, int] = {}
    touched: dict[str, list[int]] = {}
    view: dict[str, Entry] = {}          # the stacked tree below the current layer
    below: dict[str, set[str]] = {}

    def visit(path: str, size: int, index: int) -> None:
        cumulative[path] = cumulative.get(path, 0) + size
        smallest[path] = min(smallest.get(path, size), size)
        touched.setdefault(path, []).append(index)

    for index, layer in enumerate(layers):
        deleted = list(dict.fromkeys(layer.deleted))   # one node per path, as dive's tree
        for path in deleted:
            old = view.get(path)
            size = 0
            if old is not None and old.kind == "dir":   # dive: a directory's whole size
                size = sum(view[p].size for p in _under(path, below) if p in view)
            visit(path, size, index)
        for entry in _leaves(layer):
            visit(entry.path, entry.size, index)
        for path in deleted:       # out of the view, and out of ``below``: walked once
            for p in [path, *_under(path, below)]:
                view.pop(p, None)
                below.pop(p, None)
            below.get(path.rpartition("/")[0], set()).discard(path)
        for entry in layer.entries:
            view[entry.path] = entry
            parent = entry.path.rpartition("/")[0]
            below.setdefault(parent, set()).add(entry.path)
    total = sum(cumulative.values())
    tree.efficiency = sum(smallest.values()) / total if total else 1.0
    tree.dive_wasted_bytes = sum(cumulative[path] for path, indexes in touched.items()
                                 if len(indexes) >= 2)


def _under(path: str, below: dict[str, set[str]]) -> list[str]:
    out: list[str] = []
    todo = list(below.get(path, ()))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(below.get(p, ()))
    return out

