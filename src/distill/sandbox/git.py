"""Git checkouts for ``ADD <git url>``, with the host's git binary.

Like BuildKit's git source: a fresh repository, a shallow fetch of one ref
(falling back to a full fetch of it for servers that cannot fetch shallowly, and of
everything when the server refuses a commit by hash),
a detached checkout, submodules, and ``.git`` removed unless asked to keep it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from distill.errors import DistillError

_HEX = re.compile(r"[0-9a-fA-F]{7,64}")
#: What git and ssh may take from distill's environment: where programs are, and the
#: network's proxies and certificate authorities (the trusted user's). Never HOME (its
#: .gitconfig, credential helpers, ~/.git-credentials), never SSH_AUTH_SOCK: a
#: Dockerfile's ADD must not fetch with the credentials of whoever runs the build.
_PASSED = ("PATH", "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY",
           "NO_PROXY", "ALL_PROXY", "all_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR",
           "GIT_SSL_CAINFO", "GIT_SSL_CAPATH", "LANG", "LC_ALL")
_ENV = {
    "GIT_TERMINAL_PROMPT": "0",      # never ask for credentials on a tty
    "GIT_CONFIG_NOSYSTEM": "1",      # no system config,
    "GIT_CONFIG_GLOBAL": "/dev/null",  # no user config (credential helpers, insteadOf...)
    "GIT_ASKPASS": "/bin/true",
    "SSH_ASKPASS": "/bin/true",
    # ssh reads ~/.ssh from the password database, not $HOME: no config, no key files
    "GIT_SSH_COMMAND": "ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes "
                       "-o IdentityFile=none -o IdentityAgent=none",
}


class GitError(DistillError):
    """A git command failed (unknown repository, unknown ref, no network)."""


def _git(args: list[str], cwd: Path | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k in _PASSED} | _ENV
    env["HOME"] = "/nonexistent"  # nothing of the user's is read through $HOME either
    try:
        proc = subprocess.run(["git", "-c", "advice.detachedHead=false", *args], cwd=cwd,
                              env=env, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise GitError("git is not installed; ADD of a git repository needs it") from exc
    if proc.returncode != 0:
        raise GitError(f"git {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout


def clone(url: str, ref: str | None, dest: Path, keep_git_dir: bool, *,
          submodules: bool = True) -> str:
    """Check out ``ref`` (branch, tag or commit; None = the remote's HEAD) of ``url`` into
    ``dest`` (created; must not exist or be empty), with its submodules unless told not to.
    Returns the commit checked out."""
    dest.mkdir(parents=True, exist_ok=True)
    _git(["init", "-q", str(dest)])
    _git(["remote", "add", "origin", url], cwd=dest)
    want = ref or "HEAD"
    target = "FETCH_HEAD"
    try:
        _git(["fetch", "-q", "--depth=1", "--no-tags", "origin", want], cwd=dest)
    except GitError:
        try:   # a server without shallow fetches (git's dumb HTTP protocol)
            _git(["fetch", "-q", "--no-tags", "origin", want], cwd=dest)
        except GitError:
            # a commit hash the server will not serve by name: fetch everything
            _git(["fetch", "-q", "--tags", "origin", "+refs/heads/*:refs/remotes/origin/*"],
                 cwd=dest)
            target = want
    _git(["checkout", "-q", "--detach", target], cwd=dest)
    if ref and keep_git_dir and ref.startswith(("refs/tags/", "refs/heads/")):
        _git(["update-ref", ref, "HEAD"], cwd=dest)
    elif ref and keep_git_dir and not ref.startswith("refs/") and not _HEX.fullmatch(ref):
        # keep the name around when .git is kept, as BuildKit does for tags/branches
        _git(["update-ref", f"refs/tags/{ref}" if _is_tag(url, ref) else f"refs/heads/{ref}",
              "HEAD"], cwd=dest)
    commit = _git(["rev-parse", "HEAD"], cwd=dest).strip()
    if submodules and (dest / ".gitmodules").exists():
        _git(["-c", "protocol.file.allow=user", "submodule", "update", "-q", "--init",
              "--recursive", "--depth=1"], cwd=dest)
    if not keep_git_dir:
        shutil.rmtree(dest / ".git")
    return commit


def _is_tag(url: str, ref: str) -> bool:
    try:
        out = _git(["ls-remote", "--tags", url, ref])
    except GitError:
        return False
    return bool(out.strip())
