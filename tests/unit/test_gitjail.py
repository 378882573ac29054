"""The command line of ADD's git jail: what it shows git, and what it never carries."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill.sandbox import _gitjail

FDS = {"info": 3, "block": 4, "passwd": 5, "group": 6, "env": 7, "seccomp": 8}


@pytest.fixture(autouse=True)
def _bwrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_gitjail, "bwrap_path", lambda: "bwrap")


def _binds(argv: list[str]) -> dict[str, str]:
    """Destination -> source of every bind mount on the command line."""
    out = {}
    for i, arg in enumerate(argv):
        if arg in ("--bind", "--ro-bind", "--ro-bind-try"):
            out[argv[i + 2]] = f"{arg} {argv[i + 1]}"
    return out


def test_the_jail_sees_the_system_and_its_checkout_only() -> None:
    argv = _gitjail._argv(["git", "fetch"], Path("/tmp/d/checkout"), "default", {}, FDS)
    binds = _binds(argv)
    assert binds.pop("/checkout") == "--bind /tmp/d/checkout"
    assert all(value.startswith("--ro-bind ") for value in binds.values()), binds
    assert set(binds) <= {"/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64",
                          "/libx32"}, binds
    assert "--share-net" not in argv and "--unshare-all" in argv
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    assert argv[-3:] == ["--", "git", "fetch"]


def test_host_network_is_shared_only_when_asked() -> None:
    argv = _gitjail._argv(["git"], Path("/c"), "host", {}, FDS)
    assert "--share-net" in argv


def test_the_environment_never_reaches_the_command_line() -> None:
    """A proxy's password is the trusted user's: bubblewrap reads it from a memory file."""
    env = {"https_proxy": "http://me:PROXY-PASSWORD@proxy:3128", "PATH": "/usr/bin"}
    argv = _gitjail._argv(["git"], Path("/c"), "default", env, FDS)
    assert not any("PROXY-PASSWORD" in arg for arg in argv)
    assert argv[argv.index("--args") + 1] == "7"


def test_certificates_named_by_the_user_are_bound_read_only() -> None:
    env = {"SSL_CERT_FILE": "/opt/corp/ca.pem", "GIT_SSL_CAPATH": "/etc/ssl/certs"}
    binds = _binds(_gitjail._argv(["git"], Path("/c"), "default", env, FDS))
    assert binds["/opt/corp/ca.pem"] == "--ro-bind-try /opt/corp/ca.pem"
    assert "/etc/ssl/certs" not in binds      # under /etc, which the jail sees already
