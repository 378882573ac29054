"""The security view (distill.report.security) of synthetic images: small layer tars made
in memory, read with the secrets collector, stacked, then judged."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from distill.image.image import Image, Layer
from distill.oci import mediatypes as mt
from distill.oci.config import History, ImageConfig, RuntimeConfig
from distill.oci.descriptor import Descriptor
from distill.report.analyze import analyze
from distill.report.filetree import FileTree, stack
from distill.report.layerfiles import Entry, LayerFiles, read_layer
from distill.report.security import (
    SEVERITIES,
    Finding,
    SecretsCollector,
    buried_secrets,
    findings,
    findings_json,
    private_key,
    runs_as_root,
    tree_findings,
)
from distill.store.store import Store

# split so that secret scanners do not flag this file
BEGIN, END = "-----BEGIN ", "-----END "
BODY = "MIIEowIBAAKCAQEAt3sTfakefakefakefakefakefakefakefakefakefake\n"


def pem(label: str, extra: str = "") -> bytes:
    return f"{BEGIN}{label}-----\n{extra}{BODY}{END}{label}-----\n".encode()


@dataclass(frozen=True)
class M:
    """One tar member to write."""

    info: tarfile.TarInfo
    data: bytes = b""


def f(path: str, data: bytes = b"x", mode: int = 0o644, uid: int = 0, gid: int = 0) -> M:
    info = tarfile.TarInfo(path)
    info.size, info.mode, info.uid, info.gid = len(data), mode, uid, gid
    return M(info, data)


def exe(path: str, mode: int = 0o755) -> M:
    return f(path, b"\x7fELF", mode)


def d(path: str, mode: int = 0o755) -> M:
    info = tarfile.TarInfo(path)
    info.type, info.mode = tarfile.DIRTYPE, mode
    return M(info)


def sym(path: str, target: str) -> M:
    info = tarfile.TarInfo(path)
    info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
    return M(info)


def hard(path: str, source: str, mode: int = 0o755) -> M:
    info = tarfile.TarInfo(path)
    info.type, info.linkname, info.mode = tarfile.LNKTYPE, source, mode
    return M(info)


def whiteout(path: str) -> M:
    parent, _, name = path.rpartition("/")
    return f(f"{parent}/.wh.{name}".lstrip("/"), b"")


def tar_bytes(*members: M) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for m in members:
            tar.addfile(m.info, io.BytesIO(m.data) if m.info.isfile() else None)
    return buf.getvalue()


def layer(*members: M, compress: bool = False) -> LayerFiles:
    data = tar_bytes(*members)
    media_type = mt.OCI_LAYER_TAR
    if compress:
        data, media_type = gzip.compress(data), mt.OCI_LAYER_GZIP
    files, _, _ = read_layer(io.BytesIO(data), media_type, "test layer", [SecretsCollector()])
    return files


def judge(*layers: LayerFiles, user: str = "nobody",
          instructions: list[str] | None = None,
          history: list[str] | None = None) -> list[Finding]:
    tree: FileTree = stack(layers)
    made = instructions if instructions is not None else [f"RUN step {i}"
                                                          for i in range(len(layers))]
    return tree_findings(tree, user=user, instructions=made, history=history or made)


def pairs(found: list[Finding]) -> set[tuple[str, str]]:
    return {(x.category, x.path) for x in found}


def at(found: list[Finding], path: str) -> list[Finding]:
    return [x for x in found if x.path == path]


# -- programs ---------------------------------------------------------------------------
def test_programs_by_category() -> None:
    found = judge(layer(
        d("bin"), exe("bin/busybox"), sym("bin/sh", "busybox"), sym("bin/ls", "busybox"),
        hard("bin/ash", "bin/busybox"), hard("bin/cat", "bin/busybox"),
        d("usr/bin"), exe("usr/bin/bash"), exe("usr/bin/apt-get"), exe("usr/bin/dpkg"),
        exe("usr/bin/pip3.11"), exe("usr/bin/gcc-12"), sym("usr/bin/gcc", "gcc-12"),
        exe("usr/bin/python3.11"), sym("usr/bin/python3", "python3.11"),
        exe("usr/bin/perl"), exe("usr/bin/ls"),
        d("usr/local/bin"), exe("usr/local/bin/node"), exe("usr/local/bin/npm"),
        d("opt/java/bin"), exe("opt/java/bin/java"), exe("opt/java/bin/javac"),
        d("sbin"), exe("sbin/apk"),
        d("usr/local/go/bin"), exe("usr/local/go/bin/go"),
        d("usr/share/doc"), exe("usr/share/doc/bash"),         # not a bin directory
    ))
    assert pairs(found) == {
        ("shell", "/bin/busybox"), ("shell", "/bin/sh"), ("shell", "/bin/ash"),
        ("shell", "/usr/bin/bash"),
        ("package-manager", "/usr/bin/apt-get"), ("package-manager", "/usr/bin/dpkg"),
        ("package-manager", "/usr/bin/pip3.11"), ("package-manager", "/usr/local/bin/npm"),
        ("package-manager", "/sbin/apk"),
        ("compiler", "/usr/bin/gcc-12"), ("compiler", "/usr/bin/gcc"),
        ("compiler", "/opt/java/bin/javac"), ("compiler", "/usr/local/go/bin/go"),
        ("interpreter", "/usr/bin/python3.11"), ("interpreter", "/usr/bin/python3"),
        ("interpreter", "/usr/bin/perl"), ("interpreter", "/usr/local/bin/node"),
        ("interpreter", "/opt/java/bin/java"),
    }
    severity = {x.category: x.severity for x in found}
    assert severity == {"shell": "low", "package-manager": "low", "compiler": "low",
                        "interpreter": "info"}
    (sh,) = at(found, "/bin/sh")
    assert sh.detail == "symlink to /bin/busybox"
    (ash,) = at(found, "/bin/ash")
    assert ash.detail == "hard link to /bin/busybox"


def test_symlinks_resolve_through_the_image() -> None:
    found = judge(layer(
        sym("bin", "usr/bin"), d("usr/bin"), exe("usr/bin/dash"), sym("usr/bin/sh", "dash"),
        sym("usr/bin/bash", "/bin/missing"),               # dangling: not a shell
        sym("usr/bin/loop", "loop2"), sym("usr/bin/loop2", "loop"),
        exe("usr/bin/python3.12"),
        d("usr/local/bin"), sym("usr/local/bin/py", "/bin/python3.12"),  # via /bin -> usr/bin
        sym("usr/local/bin/tools", "/usr/bin"),             # a directory
        f("usr/bin/zsh", b"not executable", 0o644),
    ))
    assert pairs(found) == {("shell", "/usr/bin/dash"), ("shell", "/usr/bin/sh"),
                            ("interpreter", "/usr/bin/python3.12"),
                            ("interpreter", "/usr/local/bin/py")}
    (py,) = at(found, "/usr/local/bin/py")
    assert py.detail == "symlink to /usr/bin/python3.12"


def test_a_shell_added_later_carries_its_layers_instruction() -> None:
    base = layer(d("bin"), exe("bin/true"))
    added = layer(d("bin"), exe("bin/sh"))
    found = judge(base, layer(f("etc/motd")), added,
                  instructions=["ADD rootfs.tar /", "COPY motd /etc/",
                                "RUN cp /tmp/sh /bin/sh"])
    (sh,) = found
    assert (sh.category, sh.path, sh.layer, sh.instruction) == (
        "shell", "/bin/sh", 2, "RUN cp /tmp/sh /bin/sh")


def test_a_shell_deleted_later_is_not_reported() -> None:
    found = judge(layer(d("bin"), exe("bin/bash"), exe("bin/sh")),
                  layer(whiteout("bin/bash")))
    assert pairs(found) == {("shell", "/bin/sh")}


# -- modes ------------------------------------------------------------------------------
def test_setuid_setgid_and_world_writable() -> None:
    found = judge(layer(
        d("usr/lib"), f("usr/lib/su", mode=0o4755), f("usr/lib/mine", mode=0o4755, uid=1000),
        f("usr/lib/wall", mode=0o2755, gid=5), f("usr/lib/both", mode=0o6755),
        d("tmp", 0o1777), d("var/tmp", 0o777), d("srv", 0o2777),
        f("etc/app.conf", mode=0o666), f("etc/ok.conf", mode=0o664),
        sym("etc/link", "app.conf"),                 # symlinks are 0777: not reported
        d("data", 0o3777),                           # sticky: fine
    ))
    got = {(x.category, x.path, x.severity) for x in found}
    assert got == {
        ("setuid", "/usr/lib/su", "high"), ("setuid", "/usr/lib/mine", "medium"),
        ("setgid", "/usr/lib/wall", "medium"),
        ("setuid", "/usr/lib/both", "high"), ("setgid", "/usr/lib/both", "medium"),
        ("world-writable", "/var/tmp", "medium"), ("world-writable", "/srv", "medium"),
        ("world-writable", "/etc/app.conf", "medium"),
    }
    (mine,) = at(found, "/usr/lib/mine")
    assert mine.detail == "mode 4755, owner 1000:0"


def test_sticky_tmp_is_not_world_writable() -> None:
    assert judge(layer(d("tmp", 0o1777))) == []


# -- root ---------------------------------------------------------------------------------
@pytest.mark.parametrize("user", ["", "root", "0", "0:0", "root:root", "root:1000", " 00 "])
def test_root_users(user: str) -> None:
    assert runs_as_root(user)


@pytest.mark.parametrize("user", ["nobody", "1000", "1000:0", "65532:65532", "app:root"])
def test_other_users(user: str) -> None:
    assert not runs_as_root(user)


def test_root_user_finding_names_the_user_instruction() -> None:
    files = layer(f("etc/passwd"))
    (found,) = judge(files, user="", instructions=["ADD rootfs.tar /"],
                     history=["ADD rootfs.tar /", 'CMD ["sh"]'])
    assert (found.category, found.severity, found.path, found.layer) == (
        "root-user", "medium", "", None)
    assert found.instruction == "no USER instruction"

    (found,) = judge(files, user="0:0", instructions=["ADD rootfs.tar /"],
                     history=["ADD rootfs.tar /", "USER app", "/bin/sh -c #(nop)  USER 0:0",
                              "RUN echo USER x"])
    assert found.instruction == "/bin/sh -c #(nop)  USER 0:0"
    assert "'0:0'" in found.detail

    assert judge(files, user="app", history=["USER app"]) == []


# -- secrets ----------------------------------------------------------------------------
def test_private_keys_by_content() -> None:
    cert = pem("CERTIFICATE")
    found = judge(layer(
        d("etc/ssl/private"),
        f("etc/ssl/certs/site.pem", cert),                        # a certificate: fine
        f("etc/ssl/private/site.pem", cert + pem("PRIVATE KEY")), # cert then key
        f("etc/ssl/private/rsa.key", pem("RSA PRIVATE KEY")),
        f("etc/ssl/private/ec.key", pem("EC PRIVATE KEY")),
        f("etc/ssl/private/enc.key", pem("ENCRYPTED PRIVATE KEY")),
        f("etc/ssl/private/old.key", pem("RSA PRIVATE KEY", "Proc-Type: 4,ENCRYPTED\n\n")),
        f("etc/ssl/private/public.key", pem("PUBLIC KEY")),       # named .key, not a key
        f("root/.ssh/id_ed25519", pem("OPENSSH PRIVATE KEY")),
        f("root/.ssh/id_ed25519.pub", b"ssh-ed25519 AAAAC3Nza fake"),
        f("etc/ssh/ssh_host_ecdsa_key", pem("OPENSSH PRIVATE KEY")),
        f("home/u/me.ppk", b"PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\n"),
        f("home/u/notes.txt", pem("RSA PRIVATE KEY")),            # any small file is read
    ))
    details = {x.path: x.detail for x in found if x.category == "secret"}
    assert details == {
        "/etc/ssl/private/site.pem": "PEM PRIVATE KEY",
        "/etc/ssl/private/rsa.key": "PEM RSA PRIVATE KEY",
        "/etc/ssl/private/ec.key": "PEM EC PRIVATE KEY",
        "/etc/ssl/private/enc.key": "PEM ENCRYPTED PRIVATE KEY (passphrase-protected)",
        "/etc/ssl/private/old.key": "PEM RSA PRIVATE KEY (passphrase-protected)",
        "/root/.ssh/id_ed25519": "PEM OPENSSH PRIVATE KEY",
        "/etc/ssh/ssh_host_ecdsa_key": "PEM OPENSSH PRIVATE KEY",
        "/home/u/me.ppk": "PuTTY private key",
        "/home/u/notes.txt": "PEM RSA PRIVATE KEY",
    }
    assert {x.severity for x in found} == {"high"}


def test_private_key_parser() -> None:
    assert private_key(pem("PGP PRIVATE KEY BLOCK")) == "PEM PGP PRIVATE KEY BLOCK"
    assert private_key(pem("DSA PRIVATE KEY")) == "PEM DSA PRIVATE KEY"
    assert private_key(pem("CERTIFICATE")) is None
    assert private_key(b"PuTTY-User-Key-File-2: ssh-rsa\nEncryption: aes256-cbc\n") == (
        "PuTTY private key (passphrase-protected)")
    assert private_key(b"") is None


def test_collector_reads_the_head_of_small_files_and_of_key_named_ones() -> None:
    collector = SecretsCollector()
    assert collector.wants(Entry("a/server.pem", "file", 300_000, 0o600)) == 4096
    assert collector.wants(Entry("root/.ssh/id_rsa", "file", 10, 0o600)) == 4096
    assert collector.wants(Entry("opt/notes.txt", "file", 3000, 0o644)) == 4096
    assert collector.wants(Entry("a/huge.pem", "file", 50 << 20, 0o600)) == 0
    assert collector.wants(Entry("usr/bin/python3", "file", 6 << 20, 0o755)) == 0


def test_a_key_deleted_later_is_not_in_the_final_view_but_still_in_its_layer() -> None:
    """The final image does not show it; its layer still holds it, and anyone who pulls
    the image has the layer: a buried secret (a new user expected it found)."""
    key = pem("RSA PRIVATE KEY")
    layers = (
        layer(d("root/.ssh"), f("root/.ssh/id_rsa", key, 0o600),
              d("app/certs"), f("app/certs/tls.key", key), f("app/.env", b"TOKEN=1\n")),
        layer(whiteout("root/.ssh/id_rsa"), whiteout("app/.env")),
        layer(d("app/certs"), f("app/certs/.wh..wh..opq", b"")),
    )
    assert judge(*layers) == []
    buried = buried_secrets(stack(layers), layers, ["COPY . /", "RUN rm", "RUN rm -rf"])
    assert sorted((b.path, b.layer, b.instruction, b.severity) for b in buried) == [
        ("/app/.env", 0, "COPY . /", "high"),
        ("/app/certs/tls.key", 0, "COPY . /", "high"),
        ("/root/.ssh/id_rsa", 0, "COPY . /", "high")]
    assert all("still in layer 0" in b.detail for b in buried)


def test_a_key_overwritten_by_a_certificate_is_buried_not_shown() -> None:
    layers = (layer(f("srv/tls.pem", pem("EC PRIVATE KEY"))),
              layer(f("srv/tls.pem", pem("CERTIFICATE"))))
    assert judge(*layers) == []
    (buried,) = buried_secrets(stack(layers), layers, ["COPY a", "COPY b"])
    assert (buried.path, buried.layer) == ("/srv/tls.pem", 0)


def test_a_key_is_traced_to_its_layer_in_a_gzip_layer() -> None:
    found = judge(layer(f("etc/hostname")),
                  layer(f("app/deploy.key", pem("RSA PRIVATE KEY")), compress=True),
                  instructions=["ADD rootfs.tar /", "COPY . /app"])
    (key,) = found
    assert (key.path, key.layer, key.instruction) == ("/app/deploy.key", 1, "COPY . /app")


def test_credential_files() -> None:
    found = judge(layer(
        f("root/.aws/credentials"), f("root/.aws/config"),
        f("root/.config/gcloud/credentials.db"),
        f("root/.config/gcloud/application_default_credentials.json"),
        d("root/.azure"), f("root/.azure/msal_token_cache.json"),
        f("root/.azure/azureProfile.json"),
        f("root/.docker/config.json"), f("app/config.json"),
        f("root/.npmrc"), f("root/.pypirc"), f("root/.netrc"), f("root/.git-credentials"),
        f("root/.kube/config"),
        f("app/.env"), f("app/.env.production"), f("app/.env.example"),
        f("app/environment.env"),
        f("app/client.p12", b"\x30\x82"), f("app/CLIENT.PFX", b"\x30\x82"),
        sym("app/secret.env", "/run/secrets/env"),
    ))
    assert {x.category for x in found} == {"secret"}
    assert {x.path for x in found} == {
        "/root/.aws/credentials", "/root/.config/gcloud/credentials.db",
        "/root/.config/gcloud/application_default_credentials.json", "/root/.azure",
        "/root/.docker/config.json", "/root/.npmrc", "/root/.pypirc", "/root/.netrc",
        "/root/.git-credentials", "/root/.kube/config", "/app/.env", "/app/.env.production",
        "/app/client.p12", "/app/CLIENT.PFX",
    }


def test_a_git_directory_is_one_finding() -> None:
    found = judge(layer(
        d("src/.git"), f("src/.git/HEAD"), f("src/.git/config"), d("src/.git/objects/ab"),
        f("src/.git/objects/ab/cdef"), f("src/.git/index"),
        f("vendor/lib/.git", b"gitdir: ../../.git/modules/lib\n"),   # a file: not one
        f("elsewhere/objects/.git/x"),                  # an implicit .git directory
    ))
    assert [(x.category, x.path, x.severity) for x in found] == [
        ("secret", "/elsewhere/objects/.git", "medium"), ("secret", "/src/.git", "medium")]


# -- all together -------------------------------------------------------------------------
def rootfs() -> list[LayerFiles]:
    return [
        layer(d("bin"), exe("bin/busybox"), sym("bin/sh", "busybox"), d("tmp", 0o1777),
              f("bin/su", mode=0o4755)),
        layer(d("app"), f("app/.env"), f("app/server.pem", pem("PRIVATE KEY")),
              f("app/cache", mode=0o666)),
    ]


def test_order_is_severity_then_path_and_json_is_plain() -> None:
    found = judge(*rootfs(), user="", instructions=["ADD rootfs.tar /", "COPY . /app"],
                  history=["ADD rootfs.tar /", "COPY . /app"])
    assert [(x.severity, x.path, x.category) for x in found] == [
        ("high", "/app/.env", "secret"),
        ("high", "/app/server.pem", "secret"),
        ("high", "/bin/su", "setuid"),
        ("medium", "", "root-user"),
        ("medium", "/app/cache", "world-writable"),
        ("low", "/bin/busybox", "shell"),
        ("low", "/bin/sh", "shell"),
    ]
    assert all(x.severity in SEVERITIES for x in found)
    out = findings_json(found)
    assert json.loads(json.dumps(out)) == out
    assert out[1] == {"category": "secret", "severity": "high", "path": "/app/server.pem",
                      "layer": 1, "instruction": "COPY . /app", "detail": "PEM PRIVATE KEY"}
    assert out[3]["layer"] is None


def test_through_analyze(tmp_path: Path) -> None:
    """The real path: layer blobs in a store, an image whose history says what made them,
    ``analyze`` with the collector, then ``findings``."""
    store = Store(tmp_path / "store")
    image = Image(ImageConfig(config=RuntimeConfig(user="root")))
    made = [("ADD rootfs.tar /", tar_bytes(d("bin"), exe("bin/busybox"),
                                           sym("bin/sh", "busybox"))),
            ("COPY id_rsa /root/.ssh/", tar_bytes(f("root/.ssh/id_rsa",
                                                    pem("OPENSSH PRIVATE KEY"), 0o600)))]
    for created_by, data in made:
        digest, size = store.blobs.put_bytes(data)
        image = image.append_layer(Layer(Descriptor(mt.OCI_LAYER_TAR, digest, size), digest,
                                         size), created_by)
    image = image.add_history("USER root")
    assert image.config.history[-1] == History("USER root", empty_layer=True)
    analysis = analyze(store, image, "test:latest", [SecretsCollector()])
    got = [(x.category, x.path, x.layer, x.instruction) for x in findings(analysis)]
    assert got == [
        ("secret", "/root/.ssh/id_rsa", 1, "COPY id_rsa /root/.ssh/"),
        ("root-user", "", None, "USER root"),
        ("shell", "/bin/busybox", 0, "ADD rootfs.tar /"),
        ("shell", "/bin/sh", 0, "ADD rootfs.tar /"),
    ]


def test_a_hard_link_has_its_files_mode_not_its_headers() -> None:
    """`bin/sh` a hard link whose header says 0644 to an executable busybox: on disk it
    is the busybox inode, executable; the shell is found (an attacker hid it so)."""
    link = tarfile.TarInfo("bin/sh")
    link.type, link.linkname, link.mode = tarfile.LNKTYPE, "usr/lib/x/payload", 0o644
    found = judge(layer(d("usr/lib/x"), exe("usr/lib/x/payload"), d("bin"), M(link, b"")))
    assert [(x.category, x.path) for x in found] == [("shell", "/bin/sh")]


def test_a_file_under_a_symlinked_directory_is_not_taken_for_a_buried_one() -> None:
    """merged-usr: `bin -> usr/bin`, then a layer writes `bin/.env`; stacking puts it at
    `usr/bin/.env`, where it is shown: found once, not also as removed (a review found
    the layer's own path looked up)."""
    layers = (layer(d("usr/bin"), sym("bin", "usr/bin")), layer(f("bin/.env", b"K=v\n")))
    tree = stack(layers)
    assert buried_secrets(tree, layers, ["ADD", "COPY"]) == []
    assert [(x.path, x.layer) for x in judge(*layers) if x.category == "secret"] == [
        ("/usr/bin/.env", 1)]
