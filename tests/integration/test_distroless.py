"""distill base: distroless images from verified Debian packages, read back by tools that
share no code with distill (skopeo, umoci, OpenSSL through Python's ssl, the image's own
busybox and python3 run under chroot), reproducible from a lock, and refused — with
nothing stored — when any link of the archive's chain of trust is tampered with.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import re
import shutil
import ssl
import stat
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from distill.debian.lock import Lock
from distill.oci.reference import normalize_name
from tests.conftest import RunDistill
from tests.helpers.distroless import Built, printed_digest, unpacker
from tests.helpers.mirror import (
    INRELEASE,
    PACKAGES_XZ,
    LocalMirror,
    build_local_mirror,
    serve_mirror,
)
from tests.helpers.readback import skopeo_inspect, umoci_unpack
from tests.helpers.unpacked import entries, is_elf, resolve_in

pytestmark = pytest.mark.integration

NONROOT = 65532
CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"
MAX_STATIC_COMPRESSED = 3_000_000
# Anything that could run a script, or install or inspect packages, in the image.
FORBIDDEN_PATHS = (
    "bin/sh", "bin/bash", "bin/dash", "bin/rbash", "bin/busybox",
    "usr/bin/sh", "usr/bin/bash", "usr/bin/dash", "usr/bin/busybox",
    "usr/bin/dpkg", "usr/bin/dpkg-deb", "usr/bin/dpkg-query", "usr/bin/apt",
    "usr/bin/apt-get", "usr/bin/apt-cache", "usr/bin/perl", "bin/perl", "sbin/ldconfig",
)
FORBIDDEN_NAMES = re.compile(r"(sh|bash|dash|rbash|busybox|dpkg(-.*)?|apt(-.*)?|perl[0-9.]*)")


# -- building and reading back -------------------------------------------------------


@pytest.fixture(scope="module")
def unpacked(distill: RunDistill,
             tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Built]:
    return unpacker(distill, tmp_path_factory, "distroless")


STATIC_VARIANTS = ["static", "static:nonroot", "static:debug"]


# -- 1. small, no shell, no package manager, the files distroless has ------------------


def test_static_is_under_3mb_compressed(distill: RunDistill, store_root: Path) -> None:
    proc = distill("base", "static", "-t", "distroless/static")
    digest = printed_digest(proc.stdout, "distroless/static:latest")
    info = skopeo_inspect(store_root, normalize_name("distroless/static"))  # the store is a layout
    assert info["manifest_digest"] == digest
    layers = info["manifest"]["layers"]
    on_disk = sum((store_root / "blobs" / "sha256" / layer["digest"].split(":")[1])
                  .stat().st_size for layer in layers)
    assert on_disk == sum(layer["size"] for layer in layers)
    assert 0 < on_disk < MAX_STATIC_COMPRESSED, f"static is {on_disk} bytes compressed"
    listed = distill("images").stdout
    assert re.search(r"^distroless/static:latest\s+" + re.escape(digest[:19]), listed, re.MULTILINE)


@pytest.mark.parametrize("preset", STATIC_VARIANTS)
def test_no_shell_and_no_package_manager(unpacked: Callable[[str], Built], preset: str) -> None:
    built = unpacked(preset)
    tree = entries(built.rootfs)
    present = [p for p in FORBIDDEN_PATHS if p in tree]
    assert not present, f"{preset} has {present}"
    apt = [p for p in tree if re.fullmatch(r"(usr/)?s?bin/apt.*", p)]
    assert not apt
    # No program by any of those names anywhere (dpkg's *directories* are fine: status.d).
    named = sorted(p for p, st in tree.items() if not stat.S_ISDIR(st.st_mode)
                   and FORBIDDEN_NAMES.fullmatch(os.path.basename(p)))
    if built.debug:  # :debug ships busybox on purpose, at /busybox/busybox, as Google's
        named = [p for p in named if not p.startswith("busybox/")
                 and not p.startswith(("usr/share/initramfs-tools/", "usr/share/lintian/"))]
    assert not named, f"{preset} has {named}"
    # Stronger: static has no C library, so no ELF program at all (:debug: only busybox).
    elves = sorted(p for p in tree if is_elf(built.rootfs / p))
    assert elves == (["busybox/busybox"] if built.debug else [])
    locked = {rec.name for rec in built.lock.packages}
    assert not locked & {"bash", "dash", "dpkg", "apt", "perl-base", "coreutils", "libc6"}


@pytest.mark.parametrize("preset", STATIC_VARIANTS)
def test_distroless_files(unpacked: Callable[[str], Built], preset: str) -> None:
    built = unpacked(preset)
    root = built.rootfs

    bundle = resolve_in(root, "etc/ssl/certs/ca-certificates.crt")
    assert bundle is not None and bundle.stat().st_size > 0
    stats = ssl.create_default_context(cafile=str(bundle)).cert_store_stats()  # OpenSSL
    assert stats["x509_ca"] > 100, stats
    assert bundle.read_bytes().count(b"-----BEGIN CERTIFICATE-----") == stats["x509"]

    assert built.read("usr/share/zoneinfo/UTC").startswith(b"TZif")

    passwd = {line.split(":")[0]: line.split(":") for line in
              built.read("etc/passwd").decode().splitlines()}
    assert passwd["root"][2:4] == ["0", "0"]
    assert passwd["nonroot"][2:4] == [str(NONROOT), str(NONROOT)]
    assert passwd["nonroot"][5] == "/home/nonroot"
    group = {line.split(":")[0]: line.split(":") for line in
             built.read("etc/group").decode().splitlines()}
    assert group["root"][2] == "0" and group["nonroot"][2] == str(NONROOT)

    tmp = os.lstat(root / "tmp")
    assert stat.S_ISDIR(tmp.st_mode) and stat.S_IMODE(tmp.st_mode) == 0o1777
    home = os.lstat(root / "home/nonroot")
    assert (home.st_uid, home.st_gid, stat.S_IMODE(home.st_mode)) == (NONROOT, NONROOT, 0o700)

    nsswitch = built.read("etc/nsswitch.conf").decode()
    assert re.search(r"^hosts:\s+files dns$", nsswitch, re.MULTILINE)
    os_release = dict(line.split("=", 1) for line in
                      built.read("etc/os-release").decode().splitlines() if "=" in line)
    assert os_release["ID"] == "debian"
    assert os_release["VERSION_CODENAME"] == "bookworm"

    # dpkg's database for scanners: one status.d file per locked package, and no others.
    status_dir = root / "var/lib/dpkg/status.d"
    listed = {p.name for p in status_dir.iterdir() if not p.name.endswith(".md5sums")}
    assert listed == {rec.name for rec in built.lock.packages}
    for rec in built.lock.packages:
        text = (status_dir / rec.name).read_text()
        assert re.search(rf"^Package: {re.escape(rec.name)}$", text, re.MULTILINE), text
        assert re.search(rf"^Version: {re.escape(rec.version)}$", text, re.MULTILINE), text
    if built.debug:
        assert "busybox-static" in listed


@pytest.mark.parametrize("preset", STATIC_VARIANTS)
def test_layer_is_deterministic_in_shape(unpacked: Callable[[str], Built], preset: str) -> None:
    """One layer; no timestamp after the signed Release date; only root owns files except
    the nonroot home (and Debian's own root:staff /var/local)."""
    built = unpacked(preset)
    assert len(built.manifest["layers"]) == 1
    assert built.config["created"]
    owners = {p: (st.st_uid, st.st_gid) for p, st in entries(built.rootfs).items()
              if (st.st_uid, st.st_gid) != (0, 0)}
    assert owners == {"home/nonroot": (NONROOT, NONROOT), "var/local": (0, 50)}
    late = [p for p, st in entries(built.rootfs).items()
            if st.st_mtime > built.lock.date_epoch]
    assert not late, late[:10]


def test_static_config_runs_as_root(unpacked: Callable[[str], Built]) -> None:
    config = unpacked("static").config["config"]
    assert config.get("User", "") in ("", "0", "root")
    assert "Entrypoint" not in config or not config["Entrypoint"]
    assert "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" in config["Env"]


def test_nonroot_config(unpacked: Callable[[str], Built]) -> None:
    config = unpacked("static:nonroot").config["config"]
    assert config["User"] == str(NONROOT)
    assert config["WorkingDir"] == "/home/nonroot"
    # the same files as :latest: only the config differs
    assert (unpacked("static:nonroot").manifest["layers"]
            == unpacked("static").manifest["layers"])


def test_debug_has_a_working_busybox_shell(unpacked: Callable[[str], Built]) -> None:
    built = unpacked("static:debug")
    config = built.config["config"]
    assert config["Entrypoint"] == ["/busybox/sh"]
    path = next(e for e in config["Env"] if e.startswith("PATH="))
    assert "/busybox" in path.split("=", 1)[1].split(":")
    sh = resolve_in(built.rootfs, "busybox/sh")
    assert sh is not None and is_elf(sh), "/busybox/sh does not lead to a program"
    # The image's own shell, run as the entrypoint would run it, in a container (bwrap).
    proc = subprocess.run(["bwrap", "--ro-bind", str(built.rootfs), "/", "--proc", "/proc",
                           "--dev", "/dev", "--unshare-all", "--clearenv",
                           "--setenv", "PATH", path.split("=", 1)[1], "/busybox/sh", "-c",
                           "echo hello from $0; cat /etc/os-release | grep ^ID=; busybox --list"],
                          check=False, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["hello from /busybox/sh", "ID=debian"]
    # Regression: only /busybox/sh was linked, so `ls` or `wget` was "not found".
    # Every applet the binary lists is a link to it; nothing is linked elsewhere.
    applets = set(lines[2:]) - {"busybox"}
    assert len(applets) > 200 and {"ls", "wget", "vi", "env", "sh"} <= applets
    links = {p.name for p in (built.rootfs / "busybox").iterdir() if p.is_symlink()}
    assert links == applets
    assert all(os.readlink(built.rootfs / "busybox" / a) == "/busybox/busybox" for a in applets)
    assert not os.path.lexists(built.rootfs / "bin/sh")


def test_python3_nonroot_layout_and_interpreter(unpacked: Callable[[str], Built]) -> None:
    built = unpacked("python3:nonroot")
    config = built.config["config"]
    assert config["User"] == str(NONROOT) and config["WorkingDir"] == "/home/nonroot"
    tree = entries(built.rootfs)
    assert not [p for p in FORBIDDEN_PATHS if p in tree]
    assert "dash" not in {rec.name for rec in built.lock.packages}
    env = dict(e.split("=", 1) for e in config["Env"])
    # The image's python3 with its standard library's C extensions, and OpenSSL reading
    # the image's CA bundle through SSL_CERT_FILE from the image config.
    code = ("import ssl, sqlite3, zlib, lzma, bz2, ctypes, hashlib, json, decimal, uuid;"
            "print(ssl.create_default_context().cert_store_stats()['x509_ca'])")
    proc = subprocess.run([CHROOT, "--userspec", f"{NONROOT}:{NONROOT}", str(built.rootfs),
                           "/usr/bin/python3", "-c", code],
                          check=False, capture_output=True, text=True, env=env, cwd="/")
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) > 100


# -- 2. a lock gives the same image in another store ------------------------------------


def test_same_lock_same_digest_in_fresh_stores(distill: RunDistill, tmp_path: Path) -> None:
    lock = tmp_path / "static.lock.json"
    first = distill("base", "static", "-t", "distroless/static", "--write-lock", str(lock),
                    root=tmp_path / "store-a")
    second = distill("base", "static", "-t", "distroless/static", "--lock", str(lock),
                     root=tmp_path / "store-b")
    a = printed_digest(first.stdout, "distroless/static:latest")
    b = printed_digest(second.stdout, "distroless/static:latest")
    assert a == b
    assert Lock.from_json(lock.read_text()).packages  # the lock is not empty
    # and an independent reader agrees byte for byte on what each store holds
    info_a = skopeo_inspect(tmp_path / "store-a", normalize_name("distroless/static"))
    info_b = skopeo_inspect(tmp_path / "store-b", normalize_name("distroless/static"))
    assert info_a["manifest_digest"] == info_b["manifest_digest"] == a
    assert info_a["config"] == info_b["config"]


def test_lock_that_lacks_the_presets_packages_is_refused(distill: RunDistill,
                                                         tmp_path: Path) -> None:
    lock = tmp_path / "static.lock.json"
    distill("base", "static", "-t", "x/static", "--write-lock", str(lock),
            root=tmp_path / "store")
    layout = tmp_path / "layout"
    proc = distill("base", "static:debug", "-t", "x/static:debug", "--lock", str(lock),
                   "-o", f"type=oci,dest={layout},tar=false", root=tmp_path / "store",
                   check=False)
    if proc.returncode != 0:  # refusing is right, if it says why
        assert proc.stderr.startswith("error: ") and "busybox-static" in proc.stderr
        return
    rootfs = umoci_unpack(layout, "debug", tmp_path / "bundle")
    sh = resolve_in(rootfs, "busybox/sh")
    assert sh is not None and is_elf(sh), "the debug entrypoint /busybox/sh dangles"


# -- 3. tampering with a local mirror: refused, and nothing stored -------------------------

LOCAL_PACKAGES = ("--package", "base-files", "--package", "netbase", "--package", "tzdata")


@pytest.fixture(scope="module")
def local_mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMirror]:
    root = build_local_mirror(tmp_path_factory.mktemp("mirror"))
    with serve_mirror(root) as mirror:
        yield mirror


@pytest.fixture
def mirror(local_mirror: LocalMirror) -> Iterator[LocalMirror]:
    local_mirror.restore()
    yield local_mirror
    local_mirror.restore()


def store_listing(root: Path) -> dict[str, str]:
    """Every path of a store except tmp/: files -> sha256 of content, dirs -> 'dir'."""
    listing: dict[str, str] = {}
    for rel, st in entries(root).items():
        if rel == "tmp" or rel.startswith("tmp/"):
            continue
        if stat.S_ISDIR(st.st_mode):
            listing[rel] = "dir"
        else:
            listing[rel] = hashlib.sha256((root / rel).read_bytes()).hexdigest()
    return listing


def tamper_inrelease(mirror: LocalMirror) -> None:
    """Change one hex digit of the signed Packages.xz digest (the signature no longer fits)."""
    data = mirror.path(INRELEASE).read_bytes()
    line = next(ln for ln in data.split(b"\n") if ln.endswith(b" main/binary-amd64/Packages.xz")
                and len(ln.split()[0]) == 64)
    digest = line.split()[0]
    mirror.replace(INRELEASE, digest, digest[:-1] + (b"0" if digest[-1:] != b"0" else b"1"))


TAMPERS: dict[str, tuple[Callable[[LocalMirror], str], str]] = {
    # case: (tamper and return the mirror path changed, what the error must say)
    "deb": (lambda m: (m.flip_byte(m.deb_path("netbase")), m.deb_path("netbase"))[1],
            r"sha256 mismatch"),
    "packages": (lambda m: (m.flip_byte(PACKAGES_XZ), PACKAGES_XZ)[1], r"sha256 mismatch"),
    "inrelease": (lambda m: (tamper_inrelease(m), INRELEASE)[1], r"BAD signature"),
}


def test_untampered_local_mirror_builds(distill: RunDistill, mirror: LocalMirror,
                                        tmp_path: Path) -> None:
    store = tmp_path / "store"
    proc = distill("base", *LOCAL_PACKAGES, "--mirror", mirror.url, "-t", "local/base",
                   "--write-lock", str(tmp_path / "lock.json"), root=store)
    digest = printed_digest(proc.stdout, "local/base:latest")
    assert "local/base:latest" in distill("images", root=store).stdout
    names = {rec.name for rec in Lock.from_json((tmp_path / "lock.json").read_text()).packages}
    assert names == {"base-files", "netbase", "tzdata"}
    assert skopeo_inspect(store, normalize_name("local/base"))["manifest_digest"] == digest


@pytest.mark.parametrize("case", sorted(TAMPERS))
def test_tampered_mirror_is_refused_and_nothing_is_stored(
        distill: RunDistill, mirror: LocalMirror, tmp_path: Path, case: str) -> None:
    tamper, expected = TAMPERS[case]
    store = tmp_path / "store"
    images_before = distill("images", root=store).stdout  # makes the empty store
    before = store_listing(store)
    index_before = (store / "index.json").read_bytes()

    changed = tamper(mirror)
    tampered_sha = hashlib.sha256(mirror.path(changed).read_bytes()).hexdigest()
    proc = distill("base", *LOCAL_PACKAGES, "--mirror", mirror.url, "-t", "tampered/base",
                   root=store, check=False)
    mirror.restore()

    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    assert os.path.basename(changed) in errors[0], errors[0]
    assert re.search(expected, errors[0]), errors[0]
    assert "tampered/base" not in proc.stdout

    # Nothing lands: no name, no index change, no blob, no layer, no snapshot, no cache.
    assert distill("images", root=store).stdout == images_before
    assert (store / "index.json").read_bytes() == index_before
    after = store_listing(store)
    assert {k: v for k, v in after.items() if k in before} == before
    new = {k: v for k, v in after.items() if k not in before}
    # ... except verified downloads, kept content-addressed for the next try (the .debs
    # and the Packages index that checked out before the tampered file was reached).
    for rel, sha in new.items():
        if sha == "dir":
            assert rel in ("debs", "indexes"), rel
        else:
            assert re.fullmatch(r"debs/[0-9a-f]{64}\.deb|indexes/[0-9a-f]{64}", rel), rel
            assert os.path.basename(rel).removesuffix(".deb") == sha, f"{rel} unverified"
    assert tampered_sha not in new.values()
    if case != "deb":  # nothing at all was verified before the failure
        assert not [v for v in new.values() if v != "dir"], new
    leftovers = [p for p, st in entries(store / "tmp").items() if not stat.S_ISDIR(st.st_mode)]
    assert not leftovers, leftovers

    # The same store, the mirror put back: the build goes through.
    good = distill("base", *LOCAL_PACKAGES, "--mirror", mirror.url, "-t", "restored/base",
                   root=store)
    assert printed_digest(good.stdout, "restored/base:latest").startswith("sha256:")
    assert "restored/base:latest" in distill("images", root=store).stdout


def test_verified_cache_outlasts_a_later_tampered_deb(distill: RunDistill, mirror: LocalMirror,
                                                      tmp_path: Path) -> None:
    """Once a .deb is verified and cached, a mirror that later serves altered bytes for it
    changes nothing: the cached copy is re-checked against the signed hash and used."""
    store = tmp_path / "store"
    first = distill("base", *LOCAL_PACKAGES, "--mirror", mirror.url, "-t", "local/base",
                    root=store)
    mirror.flip_byte(mirror.deb_path("netbase"))
    again = distill("base", *LOCAL_PACKAGES, "--mirror", mirror.url, "-t", "local/base",
                    root=store)
    assert (printed_digest(again.stdout, "local/base:latest")
            == printed_digest(first.stdout, "local/base:latest"))


def test_shell_form_run_on_a_base_without_a_shell_says_why(
        distill: RunDistill, distroless_static: str, tmp_path: Path) -> None:
    """A RUN in shell form on a distroless base (no /bin/sh, as in Google's images) fails
    with exit code 127; the error says the image has no shell and what to write instead
    (it said only "exit code: 127" after bwrap's "execvp /bin/sh")."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {distroless_static}\nRUN echo hello\n")
    proc = distill("build", str(ctx), check=False)
    assert proc.returncode == 1, proc.stderr
    assert "exit code: 127" in proc.stderr
    assert "the image has no /bin/sh" in proc.stderr
    assert 'SHELL ["/busybox/sh", "-c"]' in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_package_asked_for_by_name_is_installed_even_if_left_out_by_default(
        distill: RunDistill, tmp_path: Path) -> None:
    """Regression (outsider review): `--package openssl` failed with "openssl is both
    wanted and excluded": the list of what distroless leaves out is for dependencies."""
    lock = tmp_path / "lock.json"
    distill("base", "base", "--package", "openssl", "-t", "x/base-openssl",
            "--write-lock", str(lock), root=tmp_path / "store")
    names = {rec.name for rec in Lock.from_json(lock.read_text()).packages}
    assert "openssl" in names
    assert "debconf" not in names and "perl-base" not in names   # still left out


def _security_versions(arch: str) -> dict[str, str]:
    """bookworm-security's packages and versions, read here (urllib, lzma), not by distill."""
    url = (f"http://deb.debian.org/debian-security/dists/bookworm-security/main/"
           f"binary-{arch}/Packages.xz")
    with urllib.request.urlopen(url, timeout=120) as resp:
        text = lzma.decompress(resp.read()).decode()
    versions = {}
    for paragraph in text.split("\n\n"):
        fields = dict(re.findall(r"^(Package|Version): (.*)$", paragraph, re.MULTILINE))
        if "Package" in fields:
            versions[fields["Package"]] = fields["Version"]
    return versions


def test_security_updates_are_in_the_image(distill: RunDistill, tmp_path: Path) -> None:
    """Regression (outsider review): only bookworm itself was read, so a fix published in
    bookworm-security (OpenSSL, CA certificates, tzdata) was not in the image, unlike
    Google's images. No locked package may be older than bookworm-security's, and what
    comes from there is fetched from debian-security."""
    lock_file = tmp_path / "python3.lock.json"
    distill("base", "python3", "-t", "x/python3-security", "--write-lock", str(lock_file))
    lock = Lock.from_json(lock_file.read_text())
    security = _security_versions(lock.arch)
    older = [f"{rec.name} {rec.version} < {security[rec.name]}" for rec in lock.packages
             if rec.name in security and subprocess.run(
                 ["dpkg", "--compare-versions", security[rec.name], "gt", rec.version],
                 check=False).returncode == 0]
    assert not older, older
    for name, mirror in lock.mirrors:
        assert mirror == "http://deb.debian.org/debian-security", (name, mirror)
        assert security[name] == next(r.version for r in lock.packages if r.name == name)
