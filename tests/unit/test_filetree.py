"""Layers stacked into the final view: what survives, what each path cost, and what was
wasted (exact bytes), with dive's efficiency score computed by hand for each case."""

from __future__ import annotations

from distill.report.filetree import stack
from distill.report.layerfiles import Entry, LayerFiles


def f(path: str, size: int, mode: int = 0o644) -> Entry:
    return Entry(path, "file", size, mode)


def d(path: str) -> Entry:
    return Entry(path, "dir", 0, 0o755)


def link(path: str, to: str) -> Entry:
    return Entry(path, "hardlink", 0, 0o644, link=to)


def layer(*entries: Entry, deleted: tuple[str, ...] = (), opaque: tuple[str, ...] = ()
          ) -> LayerFiles:
    return LayerFiles(list(entries), list(deleted), list(opaque))


def test_deleted_and_overwritten_bytes_are_wasted() -> None:
    tree = stack([
        layer(d("bin"), f("bin/sh", 1000)),
        layer(f("big", 3000), d("data"), f("data/a", 700), f("data/b", 300), f("over", 200)),
        layer(deleted=("big", "data")),
        layer(f("over", 100)),
    ])
    assert sorted(tree.files) == ["bin", "bin/sh", "over"]
    assert [(w.path, w.by, w.bytes) for w in tree.waste] == [
        ("big", 2, 3000), ("data", 2, 1000), ("over", 3, 200)]
    assert tree.wasted_bytes == 4200
    # dive: bin/sh 1000/1000; big 3000 then a file whiteout (0): min 0 of 3000; data's
    # whiteout counts the 1000 bytes it held (min 1000 of 1000: data was no leaf in layer
    # 1); data/a, data/b once each; over 200 + 100: min 100
    assert tree.efficiency == (1000 + 0 + 1000 + 700 + 300 + 100) / (1000 + 3000 + 1000 + 1000 + 300)
    assert tree.dive_wasted_bytes == 3000 + 300     # paths a second layer touched


def test_opaque_directory_hides_what_was_below() -> None:
    tree = stack([
        layer(d("etc"), f("etc/a", 10), f("etc/b", 20)),
        layer(d("etc"), f("etc/c", 5), opaque=("etc",)),
    ])
    assert sorted(tree.files) == ["etc", "etc/c"]
    assert tree.wasted_bytes == 30 and [w.path for w in tree.waste] == ["etc/b", "etc/a"]


def test_a_file_replacing_a_directory_removes_its_tree() -> None:
    tree = stack([layer(d("x"), d("x/y"), f("x/y/z", 50)), layer(f("x", 7))])
    assert sorted(tree.files) == ["x"] and tree.files["x"].layer == 1
    assert tree.wasted_bytes == 50


def test_parents_a_tar_leaves_out_are_directories_of_its_layer() -> None:
    tree = stack([layer(f("usr/local/bin/tool", 9))])
    assert {p: tree.files[p].entry.kind for p in tree.files} == {
        "usr": "dir", "usr/local": "dir", "usr/local/bin": "dir", "usr/local/bin/tool": "file"}
    assert tree.dir_sizes()["usr"] == 9 and tree.dir_sizes()[""] == 9


def test_a_hard_link_keeps_the_bytes_when_its_file_is_deleted() -> None:
    """RUN echo y > /k1 && ln /k1 /k2; RUN rm /k1: /k2 is a regular file of the image
    (the differential case hardlink_run found this)."""
    tree = stack([layer(f("k1", 2), link("k2", "k1"), link("k3", "k2")),
                  layer(deleted=("k1",))])
    assert tree.files["k2"].entry.kind == "file" and tree.files["k2"].entry.size == 2
    assert tree.files["k3"].entry.kind == "hardlink" and tree.files["k3"].entry.link == "k2"
    assert tree.wasted_bytes == 0
    assert sum(p.entry.size for p in tree.regular_files()) == 2
    again = stack([layer(f("k1", 2), link("k2", "k1")), layer(deleted=("k1", "k2"))])
    assert again.files == {} and again.wasted_bytes == 2


def test_what_a_collector_found_goes_with_the_file() -> None:
    first = layer(f("app", 5), f("gone", 1))
    first.found[("go", "app")] = "info"
    first.found[("go", "gone")] = "old"
    tree = stack([first, layer(deleted=("gone",))])
    assert tree.found_by("go") == {"app": (0, "info")}
    linked = layer(f("a", 5), link("b", "a"))
    linked.found[("go", "a")] = "info"
    tree = stack([linked, layer(deleted=("a",))])
    assert tree.found_by("go") == {"b": (0, "info")}


def test_an_empty_image_is_fully_efficient() -> None:
    tree = stack([])
    assert tree.files == {} and tree.efficiency == 1.0 and tree.wasted_bytes == 0


def sym(path: str, to: str) -> Entry:
    return Entry(path, "symlink", 0, 0o777, link=to)


def test_a_path_under_a_symlinked_directory_lands_where_the_link_points() -> None:
    """As a runtime applies a layer: `etc -> /` then `etc/evil` is `/evil`; the link is
    read as if chrooted, `..` stops at the root (an attacker's layer found analyze
    disagreeing with umoci here)."""
    tree = stack([layer(sym("etc", "/"), f("etc/evil", 7), sym("up", "../../.."),
                        f("up/x", 1), d("real"), sym("rel", "real"), f("rel/y", 2))])
    assert {p for p, placed in tree.files.items() if placed.entry.kind == "file"} == {
        "evil", "x", "real/y"}
    sizes = tree.dir_sizes()
    assert sizes[""] == 10 and sizes["real"] == 2
    again = stack([layer(d("real"), f("real/y", 2), sym("rel", "real")),
                   layer(deleted=("rel/y",))])
    assert "real/y" not in again.files and again.wasted_bytes == 2
    loop = stack([layer(sym("a", "b"), sym("b", "a"), f("a/z", 3))])
    assert sum(p.entry.size for p in loop.regular_files()) == 3


def test_a_link_that_expands_without_end_costs_a_bounded_walk() -> None:
    """`s -> s/./././...` (2040 components) then entries under `s/`: each resolved in a
    bounded walk, once per directory (an attacker's 2 kB layer took two minutes)."""
    import time

    entries = [sym("s", "s/" + "./" * 2040)] + [f(f"s/f{i}", 1) for i in range(2000)]
    started = time.process_time()
    tree = stack([layer(*entries)])
    assert sum(p.entry.size for p in tree.regular_files()) == 2000
    assert time.process_time() - started < 30      # a guard against hours, not a benchmark


def test_a_whiteout_given_many_times_is_one_deletion() -> None:
    files = [d("a")] + [f(f"a/{i}", 1) for i in range(3000)]
    tree = stack([layer(*files), layer(deleted=("a",) * 3000)])
    assert tree.files == {} and tree.wasted_bytes == 3000
    assert [w.path for w in tree.waste] == ["a"]


def test_each_collector_has_its_own_share_of_the_budget() -> None:
    from distill.report.layerfiles import Budget

    budget = Budget(total=10)
    assert budget.take("go", 8) and budget.take("secrets", 8)
    assert not budget.take("go", 5) and budget.take("secrets", 2)
