"""Presets like Google's distroless images (gcr.io/distroless/<name>-debian12), and their
:nonroot / :debug variants.

Google installs exactly the packages it lists (no dependency closure, no maintainer
scripts); a preset does the same with :attr:`Preset.packages`. Where Google's image is
not made of Debian packages (its Node.js comes from nodejs.org), :attr:`Preset.resolved`
names Debian's package and its dependencies are followed. The facts each preset
matches, and where they were read, are in ``tests/data/distroless_facts.json``.
"""

from __future__ import annotations

from dataclasses import dataclass

from distill.errors import UsageError

# Never installed when dependencies are followed: maintainer-script machinery and tools
# a distroless image does without. Dependencies on them count as satisfied.
EXCLUDE = frozenset({
    "debconf", "debconf-2.0", "perl-base", "dpkg", "openssl", "init-system-helpers",
    "debianutils", "sensible-utils", "install-info", "readline-common", "lsb-base",
    "sysvinit-utils", "bash", "dash", "coreutils", "tar", "gzip", "ucf",
    "awk", "mawk", "gawk", "original-awk",
})

NONROOT_UID = 65532
#: The static busybox :debug images carry, at /busybox/busybox with every applet linked.
BUSYBOX_PACKAGE = "busybox-static"


@dataclass(frozen=True)
class Preset:
    """What one preset installs and how its image starts.

    ``packages`` are installed exactly as listed; ``resolved`` with their dependencies
    (except :data:`EXCLUDE`, ``exclude`` and what ``packages`` has). ``links`` are
    (path, target) symlinks made after the packages; ``{arch}`` in either stands for
    the Debian architecture. ``env`` is added after PATH and SSL_CERT_FILE;
    ``version_env`` is (variable, package): the variable holds that package's
    upstream version (Google's JAVA_VERSION). ``debug_packages`` go only into
    :debug. ``java_keystore``: write /etc/ssl/certs/java/cacerts from the CA bundle.
    ``partial``: packages of which only these paths go into the image (Google takes the
    C.UTF-8 locale from libc-bin without installing it; see :data:`PARTIAL`).
    """

    packages: tuple[str, ...]
    resolved: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()
    version_env: tuple[str, str] | None = None
    links: tuple[tuple[str, str], ...] = ()
    debug_packages: tuple[str, ...] = ()
    java_keystore: bool = False
    partial: tuple[tuple[str, tuple[str, ...]], ...] = ()


#: In every preset, as in Google's images: of ca-certificates only the bundle made from
#: its certificates (files.ca_bundle) and its copyright.
CERTIFICATES_PACKAGE = "ca-certificates"
PARTIAL = ((CERTIFICATES_PACKAGE, ("usr/share/doc/ca-certificates/copyright",)),)


# Each list is Google's, in the order its build files give it (tests/data/distroless_facts.json).
_STATIC = ("base-files", "netbase", "tzdata", "media-types", "ca-certificates")
_BASE_NOSSL = _STATIC + ("libc6",)
_BASE = _BASE_NOSSL + ("libssl3",)
_CC = _BASE + ("libgomp1", "libstdc++6", "libgcc-s1", "gcc-12-base")
_PYTHON3 = _CC + (
    "libbz2-1.0", "libdb5.3", "libexpat1", "liblzma5", "libsqlite3-0", "libuuid1",
    "libncursesw6", "libtinfo6", "python3-distutils", "zlib1g", "libcom-err2", "libcrypt1",
    "libgssapi-krb5-2", "libk5crypto3", "libkeyutils1", "libkrb5-3", "libkrb5support0",
    "libnsl2", "libreadline8", "libtirpc3", "libffi8", "libpython3.11-minimal",
    "libpython3.11-stdlib", "python3.11-minimal",
)
_JAVA_BASE = _BASE_NOSSL + ("libc-bin",) + (
    "zlib1g", "libjpeg62-turbo", "liblcms2-2", "libfreetype6", "fonts-dejavu-core",
    "fontconfig-config", "libexpat1", "libfontconfig1", "libuuid1", "libbrotli1",
    "libcrypt1", "libstdc++6", "libgcc-s1", "gcc-12-base", "libpng16-16", "libharfbuzz0b",
    "libgraphite2-3", "libpcre2-8-0", "libglib2.0-0",
)
_JVM = "/usr/lib/jvm/java-17-openjdk-{arch}"

PRESETS: dict[str, Preset] = {
    "static": Preset(_STATIC),
    "base": Preset(_BASE),
    "cc": Preset(_CC),
    # Google's python3 is built on cc, so wheels with C++ inside find libstdc++.
    "python3": Preset(
        _PYTHON3, entrypoint=("/usr/bin/python3.11",), env=("LANG=C.UTF-8",),
        links=(("/usr/bin/python3", "/usr/bin/python3.11"),
               ("/usr/bin/python", "/usr/bin/python3.11"))),
    # Google's nodejs is nodejs.org's build at /nodejs/bin/node; this is Debian's, with
    # Google's path linked to it. Debian's nodejs depends on python3 only for node-gyp.
    "nodejs": Preset(
        _CC, resolved=("nodejs",), exclude=("python3",), entrypoint=("/nodejs/bin/node",),
        links=(("/nodejs/bin/node", "/usr/bin/node"),)),
    "java17": Preset(
        _JAVA_BASE + ("openjdk-17-jre-headless",), entrypoint=("/usr/bin/java", "-jar"),
        env=("LANG=C.UTF-8",), version_env=("JAVA_VERSION", "openjdk-17-jre-headless"),
        links=(("/usr/bin/java", _JVM + "/bin/java"),),
        debug_packages=("openjdk-17-jdk-headless",), java_keystore=True,
        # Java reads its default charset from the locale: without C.UTF-8's files it
        # falls back to US-ASCII (glibc builds in only C/POSIX).
        partial=(("libc-bin", ("usr/lib/locale/C.utf8", "usr/share/doc/libc-bin/copyright")),)),
}


@dataclass(frozen=True)
class Variant:
    nonroot: bool = False
    debug: bool = False

    @classmethod
    def parse(cls, text: str) -> Variant:
        words = set(text.split("-")) if text else set()
        unknown = words - {"nonroot", "debug", "latest"}
        if unknown:
            raise UsageError(f"unknown variant {text!r}",
                             hint="variants: nonroot, debug, debug-nonroot")
        return cls(nonroot="nonroot" in words, debug="debug" in words)


@dataclass(frozen=True)
class Selection:
    """What to install (``preset``'s packages, then ``extra`` with their dependencies),
    the variant, and what to call it in messages."""

    preset: Preset
    extra: tuple[str, ...]
    variant: Variant
    label: str

    @property
    def exact(self) -> tuple[str, ...]:
        """Installed as listed."""
        debug = (BUSYBOX_PACKAGE, *self.preset.debug_packages) if self.variant.debug else ()
        return self.preset.packages + debug

    @property
    def partial(self) -> dict[str, tuple[str, ...]]:
        """Packages of which only some paths go into the image (none the user asked for
        by name with --package: those are installed whole)."""
        return {name: keep for name, keep in (*PARTIAL, *self.preset.partial)
                if name not in self.extra}

    @property
    def with_dependencies(self) -> tuple[str, ...]:
        """Installed with their dependencies."""
        return self.preset.resolved + self.extra

    @property
    def wanted(self) -> tuple[str, ...]:
        return self.exact + self.with_dependencies


def select(preset: str | None, packages: tuple[str, ...]) -> Selection:
    """`static`, `python3:nonroot`, ... or an explicit package list (with --package)."""
    if preset is None:
        if not packages:
            raise UsageError("name a preset or give --package")
        return Selection(Preset(()), tuple(packages), Variant(), "your --package list")
    name, _, variant = preset.partition(":")
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}",
                         hint="presets: " + ", ".join([*PRESETS, "debian"]))
    return Selection(PRESETS[name], tuple(packages), Variant.parse(variant), preset)
