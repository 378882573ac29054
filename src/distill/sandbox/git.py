"""Git checkouts for ``ADD <git url>``, with the host's git binary.

Like BuildKit's git source: a fresh repository, a shallow fetch of one ref
(falling back to a full fetch of it for servers that cannot fetch shallowly, and of
everything when the server refuses a commit by hash),
a detached checkout, submodules, and ``.git`` removed unless asked to keep it.

A remote is a stranger's server, named by a Dockerfile nobody trusts, so every git
command runs in a jail (:mod:`~distill.sandbox._gitjail`): unprivileged, with a private
network where the host's loopback cannot be reached (unless ``host_network``), seeing
no host files but the system's. Only a ``file://`` remote is read by git directly: it
is a host path the trusted caller named (a Dockerfile cannot name one, see
``builder/add.py``), which the jail neither shows nor lets its unprivileged user read.

In the jail git may only speak http(s), git and ssh, never ``file`` (or a path): a
repository's ``.gitmodules`` must not make ADD copy a repository of the host into the
image. For a ``file://`` remote git speaks ``file`` alone, and only for the remote
itself (``protocol.file.allow=user``: not for its submodules): it reaches no network
outside the jail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from distill.errors import DistillError
from distill.sandbox import _gitjail

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
    "HOME": "/nonexistent",          # nothing of the user's is read through $HOME either
}
#: The transports git may use in the jail (``protocol.allow=never`` refuses the rest:
#: ``file``, ``ext::``, remote helpers), and for a ``file://`` remote.
_JAILED = ("protocol.allow=never", "protocol.http.allow=always", "protocol.https.allow=always",
           "protocol.git.allow=always", "protocol.ssh.allow=always", "protocol.file.allow=never")
_DIRECT = ("protocol.allow=never", "protocol.file.allow=user")


class GitError(DistillError):
    """A git command failed (unknown repository, unknown ref, no network)."""


@dataclass(frozen=True)
class _Git:
    """Runs git in the checkout ``dest``: in the jail with ``network`` when a command
    goes ``online`` (with only a loopback otherwise), or directly if ``network`` is
    None (a ``file://`` remote)."""

    dest: Path
    network: str | None

    def __call__(self, *args: str, online: bool = False) -> str:
        if shutil.which("git") is None:
            raise GitError("git is not installed; ADD of a git repository needs it")
        env = {k: v for k, v in os.environ.items() if k in _PASSED} | _ENV
        protocols = _DIRECT if self.network is None else _JAILED
        argv = ["git", "-c", "advice.detachedHead=false",
                *(arg for setting in protocols for arg in ("-c", setting)), *args]
        if self.network is None:
            proc = subprocess.run(argv, cwd=self.dest, env=env, capture_output=True,
                                  text=True, check=False)
        else:
            proc = _gitjail.run(argv, self.dest, env=env,
                                network=self.network if online else "none")
        if proc.returncode != 0:
            raise GitError(f"git {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
        return proc.stdout


def _new_repository(url: str, directory: Path, host_network: bool) -> _Git:
    """An empty repository in ``directory`` for talking to ``url``: in the jail (with the
    host's network only if allowed) unless ``url`` is a local file:// one."""
    jailed = not url.startswith("file://")
    if jailed:
        _gitjail.prepare(directory)
    else:
        directory.mkdir(parents=True, exist_ok=True)
    git = _Git(directory, ("host" if host_network else "default") if jailed else None)
    git("init", "-q")
    return git


def clone(url: str, ref: str | None, dest: Path, keep_git_dir: bool, *,
          submodules: bool = True, host_network: bool = False) -> str:
    """Check out ``ref`` (branch, tag or commit; None = the remote's HEAD) of ``url`` into
    ``dest`` (created; must not exist or be empty), with its submodules unless told not to.
    ``host_network`` lets git reach the host's own services (``--allow network.host``).
    Returns the commit checked out. For a jailed git, ``dest``'s parent must be
    searchable by others (see :mod:`~distill.sandbox._gitjail`)."""
    git = _new_repository(url, dest, host_network)
    git("remote", "add", "origin", url)
    want = ref or "HEAD"
    target = "FETCH_HEAD"
    try:
        git("fetch", "-q", "--depth=1", "--no-tags", "origin", want, online=True)
    except GitError:
        try:   # a server without shallow fetches (git's dumb HTTP protocol)
            git("fetch", "-q", "--no-tags", "origin", want, online=True)
        except GitError:
            # a commit hash the server will not serve by name: fetch everything
            git("fetch", "-q", "--tags", "origin", "+refs/heads/*:refs/remotes/origin/*",
                online=True)
            target = want
    git("checkout", "-q", "--detach", target)
    if ref and keep_git_dir and ref.startswith(("refs/tags/", "refs/heads/")):
        git("update-ref", ref, "HEAD")
    elif ref and keep_git_dir and not ref.startswith("refs/") and not _HEX.fullmatch(ref):
        # keep the name around when .git is kept, as BuildKit does for tags/branches
        git("update-ref", f"refs/tags/{ref}" if _is_tag(git, ref) else f"refs/heads/{ref}",
            "HEAD")
    commit = git("rev-parse", "HEAD").strip()
    if submodules and (dest / ".gitmodules").exists():
        git("submodule", "update", "-q", "--init", "--recursive", "--depth=1", online=True)
    if git.network is not None:       # jailed: the checkout becomes ours again
        _gitjail.reclaim(dest)
    if not keep_git_dir:
        shutil.rmtree(dest / ".git")
    return commit


_FULL_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def resolve_commit(url: str, ref: str | None, scratch: Path, *,
                   host_network: bool = False) -> str | None:
    """The commit ``ref`` (branch, tag, full commit hash; None = the remote's HEAD) of
    ``url`` names now, asked of the remote with ``git ls-remote`` (nothing fetched), or
    None when the remote lists no such name (an abbreviated commit: only a fetch can
    tell). An annotated tag gives the commit it points to. ``scratch`` is an empty
    directory of distill's own for the jail (as for :func:`clone`)."""
    if ref is not None and _FULL_COMMIT.fullmatch(ref.lower()):
        return ref.lower()
    git = _new_repository(url, scratch, host_network)
    want = ref or "HEAD"
    out = git("ls-remote", url, want, *(() if ref is None else (f"{want}^{{}}",)),
              online=True)
    names = {}
    for line in out.splitlines():     # "<hash>\t<name>"; a server's words: hashes checked
        commit, _, name = line.partition("\t")
        if _FULL_COMMIT.fullmatch(commit.strip().lower()):
            names[name] = commit.strip().lower()
    if ref is None:
        return names.get("HEAD")
    # git's order for a short name (ref_rev_parse_rules): as given, tags, then branches
    candidates = [want, f"refs/tags/{want}", f"refs/heads/{want}"]
    for name in candidates:      # an annotated tag's peeled commit first
        if f"{name}^{{}}" in names:
            return names[f"{name}^{{}}"]
        if name in names:
            return names[name]
    return None


def _is_tag(git: _Git, ref: str) -> bool:
    try:
        out = git("ls-remote", "--tags", "origin", ref, online=True)
    except GitError:
        return False
    return bool(out.strip())
