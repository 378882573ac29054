"""resolve() on hand-made indexes: versions, alternatives, virtual packages, exclusions."""

from __future__ import annotations

import random

import pytest

from distill.debian.control import PackageRecord
from distill.debian.relations import parse_relations
from distill.debian.resolve import resolve
from distill.errors import ArchiveError

Index = dict[str, list[PackageRecord]]


def rec(name: str, version: str = "1.0", arch: str = "amd64", **fields: str) -> PackageRecord:
    paragraph = [("Package", name), ("Version", version), ("Architecture", arch)]
    paragraph += [(key.replace("_", "-"), value) for key, value in fields.items()]
    filename = f"pool/main/{name[0]}/{name}/{name}_{version}_{arch}.deb"
    paragraph += [("Filename", filename), ("Size", "100"), ("SHA256", "ab" * 32)]
    return PackageRecord(name=name, version=version, architecture=arch, filename=filename,
                         sha256="ab" * 32, size=100, fields=tuple(paragraph))


def index(*records: PackageRecord) -> Index:
    out: Index = {}
    for r in records:
        out.setdefault(r.name, []).append(r)
    return out


def names(idx: Index, *wanted: str, **kwargs: object) -> list[str]:
    return [f"{r.name}={r.version}"
            for r in resolve(idx, list(wanted), arch="amd64", **kwargs)]  # type: ignore[arg-type]


# -- versions --------------------------------------------------------------------------

@pytest.mark.parametrize(("have", "op", "want", "ok"), [
    ("1.0", ">=", "1.0", True),
    ("1.0~rc1", ">=", "1.0", False),          # ~ sorts before everything
    ("1.0+b1", ">>", "1.0", True),
    ("1:0.5", ">=", "2.0", True),             # the epoch wins
    ("2.0-1", "<<", "2.0-10", True),          # numeric, not lexical
    ("2.0-1", "<=", "2.0-1", True),
    ("2.0-1", "=", "2.0-01", True),           # equal as Debian versions
    ("2.0a", ">>", "2.0", True),
    ("2.0", "<<", "2.0", False),
    ("1.2", "<", "1.2", True),                # obsolete "<" means "<="
    ("1.3", ">", "1.2", True),                # obsolete ">" means ">="
])
def test_version_constraints(have: str, op: str, want: str, ok: bool) -> None:
    idx = index(rec("app", Depends=f"lib ({op} {want})"), rec("lib", have))
    if ok:
        assert names(idx, "app") == ["app=1.0", f"lib={have}"]
    else:
        with pytest.raises(ArchiveError, match=r"no version satisfies it \(available: "):
            names(idx, "app")


def test_newest_version_unless_pinned_or_constrained() -> None:
    idx = index(rec("lib", "1.9"), rec("lib", "1.10"), rec("lib", "1.10~beta"),
                rec("old", Depends="lib (<< 1.10)"))
    assert names(idx, "lib") == ["lib=1.10"]
    assert names(idx, "lib=1.9") == ["lib=1.9"]
    assert names(idx, "old") == ["lib=1.10~beta", "old=1.0"]  # newest that satisfies
    with pytest.raises(ArchiveError, match=r"lib=2\.0: no such version \(available: 1\.10, "):
        names(idx, "lib=2.0")


def test_conflicting_versions_are_an_error() -> None:
    idx = index(rec("lib", "1.0"), rec("lib", "2.0"), rec("app", Depends="lib (>= 2)"))
    with pytest.raises(ArchiveError, match="1.0 is already chosen"):
        names(idx, "lib=1.0", "app")


# -- alternatives ----------------------------------------------------------------------

def test_first_satisfiable_alternative() -> None:
    idx = index(rec("app", Depends="missing | old (>= 2) | good | other"),
                rec("old", "1.0"), rec("good"), rec("other"))
    assert names(idx, "app") == ["app=1.0", "good=1.0"]


def test_alternative_prefers_an_already_chosen_package() -> None:
    idx = index(rec("app", Depends="mawk | gawk, tool"), rec("mawk"), rec("gawk"),
                rec("tool", Depends="gawk"))
    # gawk is needed by tool anyway, so app's "mawk | gawk" takes it: no mawk.
    assert names(idx, "app") == ["app=1.0", "gawk=1.0", "tool=1.0"]
    assert names(idx, "gawk", "app") == ["app=1.0", "gawk=1.0", "tool=1.0"]


def test_unsatisfiable_alternatives_name_each_reason() -> None:
    idx = index(rec("app", Depends="a (>= 2) | b"), rec("a", "1.0"))
    with pytest.raises(ArchiveError) as caught:
        names(idx, "app")
    assert caught.value.message == ("app -> a (>= 2) | b: a (>= 2): no version satisfies it "
                                    "(available: 1.0); b: no such package")


# -- virtual packages ------------------------------------------------------------------

def test_virtual_package_via_provides_prefers_priority_then_name() -> None:
    idx = index(rec("base", Pre_Depends="awk"),
                rec("gawk", Provides="awk", Priority="optional"),
                rec("mawk", Provides="awk", Priority="required"),
                rec("busybox-awk", Provides="awk", Priority="optional"))
    assert names(idx, "base") == ["base=1.0", "mawk=1.0"]


def test_versioned_provides() -> None:
    idx = index(rec("app", Depends="libfoo-abi (>= 2)"),
                rec("libfoo1", Provides="libfoo-abi (= 1)"),
                rec("libfoo2", Provides="libfoo-abi (= 2), other"),
                rec("libfoo-any", Provides="libfoo-abi"))
    assert names(idx, "app") == ["app=1.0", "libfoo2=1.0"]
    # An unversioned Provides never satisfies a versioned dependency.
    idx = index(rec("app", Depends="libfoo-abi (>= 2)"), rec("libfoo-any", Provides="libfoo-abi"))
    with pytest.raises(ArchiveError, match="no provider satisfies it"):
        names(idx, "app")


def test_a_chosen_provider_satisfies_later_dependencies() -> None:
    idx = index(rec("app", Depends="mail-transport-agent, mua"),
                rec("mua", Depends="postfix | mail-transport-agent"),
                rec("exim4", Provides="mail-transport-agent"),
                rec("postfix", Provides="mail-transport-agent"))
    assert names(idx, "app") == ["app=1.0", "exim4=1.0", "mua=1.0"]


def test_wanted_virtual_package() -> None:
    idx = index(rec("mawk", Provides="awk"))
    assert names(idx, "awk") == ["mawk=1.0"]
    idx = index(rec("mawk", Provides="awk"), rec("gawk", Provides="awk"))
    with pytest.raises(ArchiveError, match="awk is a virtual package provided by gawk, mawk"):
        names(idx, "awk")


# -- architectures ---------------------------------------------------------------------

def test_architecture_qualifiers_and_all() -> None:
    idx = index(rec("app", Depends="python3:any, libc6:native, tzdata:amd64"),
                rec("python3"), rec("libc6"), rec("tzdata", arch="all"),
                rec("libc6", "9.9", arch="arm64"))
    assert names(idx, "app") == ["app=1.0", "libc6=1.0", "python3=1.0", "tzdata=1.0"]
    idx = index(rec("app", Depends="lib32:i386"), rec("lib32"))
    with pytest.raises(ArchiveError, match="architecture i386 is not amd64"):
        names(idx, "app")


def test_architecture_restrictions_in_relations() -> None:
    assert parse_relations("a [amd64], b [!amd64], c [i386 arm64], d", arch="amd64") == \
        parse_relations("a, d")


def test_other_architectures_are_ignored() -> None:
    idx = index(rec("only-arm", arch="arm64"))
    with pytest.raises(ArchiveError, match="only-arm: no such package"):
        names(idx, "only-arm")


# -- exclusions, cycles, chains --------------------------------------------------------

def test_excluded_packages_satisfy_dependencies_and_are_never_installed() -> None:
    idx = index(rec("tzdata", Depends="debconf (>= 0.5) | debconf-2.0"),
                rec("app", Depends="debconf-2.0, perl-base (>= 5)"),
                rec("debconf", Provides="debconf-2.0"),
                rec("cdebconf", Provides="debconf-2.0"),
                rec("perl-base", "5.36"))
    assert names(idx, "tzdata", "app", exclude={"debconf", "perl-base"}) == [
        "app=1.0", "tzdata=1.0"]
    assert names(idx, "tzdata") == ["debconf=1.0", "tzdata=1.0"]
    with pytest.raises(ArchiveError, match="debconf is both wanted and excluded"):
        names(idx, "debconf", exclude={"debconf"})


def test_dependency_cycles_terminate() -> None:
    idx = index(rec("libc6", "2.36", Depends="libgcc-s1"),
                rec("libgcc-s1", "12.2", Depends="gcc-12-base (= 12.2), libc6 (>= 2.35)"),
                rec("gcc-12-base", "12.2"))
    assert names(idx, "libc6") == ["gcc-12-base=12.2", "libc6=2.36", "libgcc-s1=12.2"]
    assert names(idx, "libgcc-s1") == names(idx, "libc6")


def test_missing_dependency_names_the_chain() -> None:
    idx = index(rec("python3", Depends="python3.11 (>= 3.11.2)"),
                rec("python3.11", "3.11.2", Depends="libpython3.11-stdlib (= 3.11.2)"),
                rec("libpython3.11-stdlib", "3.11.2", Pre_Depends="libffi8 (>= 3.4)"))
    with pytest.raises(ArchiveError) as caught:
        names(idx, "python3")
    assert caught.value.message == ("python3 -> python3.11 -> libpython3.11-stdlib -> "
                                    "libffi8 (>= 3.4): no such package")


def test_only_pre_depends_and_depends_are_followed() -> None:
    idx = index(rec("app", Pre_Depends="pre", Depends="dep", Recommends="rec",
                    Suggests="sug"),
                rec("pre"), rec("dep"), rec("rec"), rec("sug"))
    assert names(idx, "app") == ["app=1.0", "dep=1.0", "pre=1.0"]
    assert names(idx, "app", with_deps=False) == ["app=1.0"]


def test_deterministic_whatever_the_index_order() -> None:
    records = [rec("app", Depends="a | b, c, virt"), rec("a", "1"), rec("a", "2"),
               rec("b"), rec("c", Depends="b | a"), rec("p1", Provides="virt"),
               rec("p2", Provides="virt")]
    expected = names(index(*records), "app")
    for seed in range(5):
        shuffled = records[:]
        random.Random(seed).shuffle(shuffled)
        assert names(index(*shuffled), "app") == expected
    assert expected == ["a=2", "app=1.0", "c=1.0", "p1=1.0"]


def test_bad_input_is_an_archive_error() -> None:
    idx = index(rec("app", Depends="bad name here"), rec("ok"))
    with pytest.raises(ArchiveError, match="malformed package relation"):
        names(idx, "app")
    with pytest.raises(ArchiveError, match="bad package spec"):
        names(idx, "ok=")
