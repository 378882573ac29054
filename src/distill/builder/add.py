"""The source side of ADD, as BuildKit's Dockerfile frontend and file ops implement it.

* A source is a git repository when BuildKit's ``ParseGitRef`` accepts it (``git@host:path``,
  ``git://``, ``ssh://``, or ``http(s)://`` whose path ends in ``.git``; ``#ref[:subdir]``
  picks a ref and a directory, and so does the query form ``?ref=&subdir=`` with
  ``tag=``, ``branch=``, ``checksum=``/``commit=``, ``keep-git-dir``, ``submodules``);
  else a URL when it starts with ``http://``/``https://``; else a path in the context.
* A URL is downloaded as BuildKit's HTTP source does: the file is named after the last
  component of the URL's decoded path, Go's ``path.Base`` (``__unnamed__`` when there is
  none; the Dockerfile frontend always passes that name, so Content-Disposition is not
  used), mode 0600, mtime from ``Last-Modified``; ``--checksum`` is verified. URLs are
  not unpacked unless ``--unpack``. The name is only the file's name in the image: on
  the host the download is distill's own file, ``download`` in a private directory.
* A local file that is a tar archive (by content: gzip, bzip2, xz, zstd or plain tar whose
  first header reads) is unpacked into DEST instead of copied. As with BuildKit's
  ``chrootarchive.Untar``, members keep the archive's owners and modes (``--chown`` and
  ``--chmod`` only apply to the DEST directories created); paths resolve as if chrooted
  at DEST; a member that climbs out with ``..``, a symlink whose target climbs out, or a
  hardlink to outside is an error; existing entries are replaced, directories merged.
"""

from __future__ import annotations

import email.utils
import hashlib
import ipaddress
import os
import re
import shutil
import socket
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distill.confine import resolve_in_root
from distill.errors import ContextError
from distill.oci.digest import digest_file
from distill.sandbox.git import GitError, clone, resolve_commit

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True)
class AddOptions:
    checksum: str | None = None     # --checksum=sha256:HEX (URLs; a commit for git)
    keep_git_dir: bool = False      # --keep-git-dir
    unpack: bool | None = None      # --unpack; None = default (local archives yes, URLs no)
    #: --allow network.host: URLs and git remotes may reach the build host itself (its
    #: loopback); else a URL is refused there and git runs in a private network.
    host_network: bool = False


def _split(url: str) -> urllib.parse.SplitResult:
    """urlsplit, with a malformed URL (an unclosed IPv6 bracket...) a clean error."""
    try:
        return urllib.parse.urlsplit(url)
    except ValueError as exc:
        raise ContextError(f"invalid URL {url!r}: {exc}") from None


# -- the build host is no download server ----------------------------------------------

def _is_this_host(address: str) -> bool:
    """The loopback or the unspecified address (which reaches the loopback too)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified


def _refuse_this_host(url: str, address: str) -> ContextError:
    return ContextError(
        f"cannot fetch {url}: it leads to this machine ({address}), whose services a "
        "Dockerfile may not reach, as a RUN step cannot",
        hint="pass --allow network.host to let the build reach the host's own services")


def _resolves_to_this_host(host: str, port: int) -> str | None:
    """An address of this machine that ``host`` resolves to, if any."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return None  # the connection attempt reports it
    return next((str(i[4][0]) for i in infos if _is_this_host(str(i[4][0]))), None)


def _connect_guard(url: str) -> Callable[[str, dict[str, Any]], None]:
    """An httpcore trace hook refusing a connection to the build host itself, for every
    redirect: before connecting, when the name resolves to it (so that no handshake
    tells an open port from a closed one), and once connected, on the address actually
    connected to (whatever the name resolved to a moment before), before anything is
    sent."""
    def trace(event: str, info: dict[str, Any]) -> None:
        if event == "connection.connect_tcp.started":
            address = _resolves_to_this_host(str(info["host"]), int(info["port"]))
            if address is not None:
                raise _refuse_this_host(url, address)
        elif event == "connection.connect_tcp.complete":
            address = info["return_value"].get_extra_info("server_addr")
            if address and _is_this_host(str(address[0])):
                raise _refuse_this_host(url, str(address[0]))
    return trace


# -- classifying sources --------------------------------------------------------------

_SCP_LIKE = re.compile(r"^[A-Za-z0-9_.-]+@[^:/]+:(?!//)")   # git@github.com:owner/repo
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def is_url(src: str) -> bool:
    """BuildKit's urlutil.IsURL: an http:// or https:// prefix."""
    return src.startswith(("http://", "https://"))


@dataclass(frozen=True)
class GitRef:
    remote: str            # what git fetches from
    ref: str | None        # branch, tag or commit; None = HEAD
    subdir: str | None     # directory of the checkout to add
    checksum: str | None = None         # ?checksum= / ?commit=: the commit it must be
    keep_git_dir: bool | None = None    # ?keep-git-dir[=BOOL]
    submodules: bool = True             # ?submodules=false skips them


_VALUELESS = ("keep-git-dir", "submodules", "fetch-by-commit")   # a bare key means true


def _query_bool(key: str, value: str | None) -> bool:
    if value is None:
        return True
    # Go's strconv.ParseBool
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ContextError(f"invalid {key} value: {value!r}")


def _apply_query(ref: GitRef, query: str) -> GitRef:
    """BuildKit's dfgitutil ``loadQuery``: the ``?key=value`` options of a git URL."""
    values: dict[str, str | None] = {}
    for key, vals in urllib.parse.parse_qs(query, keep_blank_values=True).items():
        if len(vals) > 1:
            raise ContextError(f"query {key!r} has multiple values")
        if vals[0] == "" and key not in _VALUELESS:
            raise ContextError(f"query {key!r} has no value")
        values[key] = vals[0] or None
    fields: dict[str, object] = {}
    named = {"ref": ref.ref}

    def set_ref(value: str) -> None:
        if named["ref"] is not None and named["ref"] != value:
            raise ContextError(f"ref conflicts: {named['ref']!r} vs {value!r}")
        named["ref"] = value

    for key, value in values.items():
        if key == "ref":
            set_ref(value or "")
        elif key == "subdir":
            if ref.subdir and ref.subdir != value:
                raise ContextError(f"subdir conflicts: {ref.subdir!r} vs {value!r}")
            fields["subdir"] = value
        elif key in ("checksum", "commit"):
            fields["checksum"] = value
        elif key in ("keep-git-dir", "submodules"):
            fields[key.replace("-", "_")] = _query_bool(key, value)
        elif key == "mtime" and value in ("checkout", "commit"):
            if value == "commit":
                raise ContextError("mtime=commit is not supported by distill (files get the "
                                   "checkout time, BuildKit's default)")
        elif key == "mtime":
            raise ContextError(f'invalid mtime value: {value!r} (must be "checkout" or '
                               '"commit")')
        elif key == "fetch-by-commit":
            raise ContextError("fetch-by-commit is not supported by distill")
        elif key not in ("tag", "branch"):
            raise ContextError(f"unexpected query {key!r}")
    tag, branch = values.get("tag"), values.get("branch")
    if tag:
        set_ref(tag if tag.startswith("refs/tags/") else "refs/tags/" + tag)
    if branch:
        if tag:
            raise ContextError("branch conflicts with tag")
        set_ref(branch if branch.startswith("refs/heads/") else "refs/heads/" + branch)
    return replace(ref, ref=named["ref"], **fields)  # type: ignore[arg-type]


def parse_git_ref(src: str, *, allow_file: bool = False) -> GitRef | None:
    """BuildKit's gitutil.ParseGitRef, as ADD uses it: None when ``src`` is not a git source
    (or only indistinguishable from a local path, like ``github.com/owner/repo``).
    ``file://`` is no git source to BuildKit; ``allow_file`` admits it (tests, mirrors).
    Raises ContextError for a git source with a bad query."""
    if src.startswith(("./", "../", "/", "github.com/")):
        return None
    remote, _, fragment = src.partition("#")
    remote, _, query = remote.partition("?")
    m = _SCHEME.match(remote)
    if m:
        scheme = m.group(1).lower()
        if scheme not in ("http", "https", "git", "ssh") and not (allow_file and scheme == "file"):
            return None
        if scheme in ("http", "https") and not _split(remote).path.endswith(".git"):
            return None
    elif not _SCP_LIKE.match(remote):
        return None
    ref, _, subdir = fragment.partition(":")
    parsed = GitRef(remote, ref or None, subdir or None)
    if query:
        parsed = _apply_query(parsed, query)
    if parsed.ref and parsed.ref.startswith("-"):     # BuildKit's validateGitRef
        raise ContextError(f"invalid git ref {parsed.ref!r}")
    return parsed


def is_git(src: str) -> bool:
    try:
        return parse_git_ref(src) is not None
    except ContextError:
        return True     # a git source with a bad query: fetch_git reports it


def wants_unpack(opts: AddOptions, remote: bool) -> bool:
    """Whether an archive source is unpacked: --unpack if given, else local ones only."""
    return opts.unpack if opts.unpack is not None else not remote


# -- URLs -----------------------------------------------------------------------------

_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
UNNAMED = "__unnamed__"
DOWNLOAD = "download"      # the download's name on the host, in a directory of its own


def url_filename(url: str) -> str:
    """The name ADD gives the file a URL downloads, as BuildKit's Dockerfile frontend
    picks it: ``path.Base`` of the URL's decoded path (so ``%2F`` splits it there too),
    ``__unnamed__`` for none (or a URL Go's ``url.Parse`` refuses). ``..`` (``%2E%2E``)
    names no file (BuildKit fails to write it) and neither does a NUL: ContextError."""
    raw = _split(url).path
    if _BAD_ESCAPE.search(raw):
        return UNNAMED
    path = urllib.parse.unquote(raw, errors="surrogateescape").rstrip("/")
    base = path.rpartition("/")[2] if path else ("/" if raw else ".")
    if base in ("", ".", "/"):
        return UNNAMED
    if base == ".." or "\0" in base:
        raise ContextError(f"cannot download {url}: its last path segment, {base!r}, "
                           "names no file",
                           hint="ADD names a download after the last segment of the URL's "
                                "path, as BuildKit does")
    return base


def _parse_checksum(value: str, what: str) -> tuple[str, str]:
    algo, sep, hexdigest = value.partition(":")
    sizes = {"sha256": 64, "sha384": 96, "sha512": 128}
    if not sep or algo not in sizes or not re.fullmatch(f"[0-9a-f]{{{sizes[algo]}}}", hexdigest):
        raise ContextError(f"invalid checksum {value!r} for {what}: expected sha256:<64 hex "
                           "digits> (or sha384/sha512)")
    return algo, hexdigest


@dataclass(frozen=True)
class UrlValidators:
    """What a server said of a download, to ask it later whether it changed (RFC 9110
    conditional requests), and the sha256 of what it sent."""

    sha256: str
    etag: str | None = None
    last_modified: str | None = None


def unchanged_since(url: str, seen: UrlValidators, opts: AddOptions) -> bool:
    """Whether the server answers 304 Not Modified to a conditional GET with what it
    said last time (the body of any other answer is not read)."""
    import httpx  # only when a URL is fetched: not on every build's start

    headers = {k: v for k, v in (("If-None-Match", seen.etag),
                                 ("If-Modified-Since", seen.last_modified)) if v}
    if not headers:
        return False
    extensions = {} if opts.host_network else {"trace": _connect_guard(url)}
    try:
        with httpx.Client(follow_redirects=True, timeout=60) as http, \
                http.stream("GET", url, headers=headers, extensions=extensions) as resp:
            return resp.status_code == 304
    except (httpx.HTTPError, httpx.InvalidURL):
        return False            # the download that follows reports what is wrong


@contextmanager
def fetch_url(url: str, dest_dir: Path, opts: AddOptions,
              client: httpx.Client | None = None,
              seen: Callable[[UrlValidators], None] | None = None) -> Iterator[Path]:
    """Download ``url`` to ``dest_dir/download`` and yield that path; removed on exit.
    ``dest_dir`` must be distill's own (empty) directory; the file's name in the image
    is :func:`url_filename`, checked here before anything is fetched. ``seen`` is told
    the download's sha256 and the server's validators."""
    import httpx  # only when a URL is fetched: not on every build's start

    want = _parse_checksum(opts.checksum, url) if opts.checksum else None
    url_filename(url)
    h = hashlib.new(want[0] if want else "sha256")
    target = dest_dir / DOWNLOAD
    own_client = client is None
    http = client if client is not None else httpx.Client(follow_redirects=True, timeout=60)
    extensions = {} if opts.host_network else {"trace": _connect_guard(url)}
    try:
        try:
            with http.stream("GET", url, follow_redirects=True, extensions=extensions) as resp:
                if resp.status_code >= 400:
                    raise ContextError(f"failed to fetch {url}: invalid response status "
                                       f"{resp.status_code}")
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW |
                             os.O_CLOEXEC, 0o600)
                with os.fdopen(fd, "wb") as out:
                    for chunk in resp.iter_bytes(1 << 20):
                        h.update(chunk)
                        out.write(chunk)
                os.chmod(target, 0o600)
                last_modified = resp.headers.get("last-modified")
                etag = resp.headers.get("etag")
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise ContextError(f"failed to fetch {url}: {exc}") from exc
        if want and h.hexdigest() != want[1]:
            raise ContextError(f"checksum mismatch for {url}: expected {want[0]}:{want[1]}, "
                               f"got {want[0]}:{h.hexdigest()}")
        if last_modified:
            with suppress(TypeError, ValueError):
                when = email.utils.parsedate_to_datetime(last_modified).timestamp()
                os.utime(target, (when, when))
        if seen is not None:
            sha256 = h.hexdigest() if h.name == "sha256" else digest_file(str(target))[0].hex
            seen(UrlValidators(sha256, etag, last_modified))
        yield target
    finally:
        if own_client:
            http.close()
        with suppress(FileNotFoundError):
            os.unlink(target)


# -- git ------------------------------------------------------------------------------

def _git_hint(exc: GitError, opts: AddOptions) -> str | None:
    """Why git may not have connected: it ran where the host's loopback is not."""
    if opts.host_network or "connect" not in exc.message.lower():
        return None
    return ("git fetches in a private network, as a RUN step runs: this machine's own "
            "services (its loopback, whatever name or redirect leads there) are out of "
            "reach; pass --allow network.host to let the build reach them")


def git_commit(url: str, dest_dir: Path, opts: AddOptions) -> str | None:
    """The commit a git source names now (asked of the remote, nothing fetched), or
    None when only a fetch can tell (an abbreviated commit hash). ``dest_dir``: an
    empty directory of distill's own, as for :func:`fetch_git`."""
    ref = parse_git_ref(url, allow_file=True)
    if ref is None:
        raise ContextError(f"not a git repository URL: {url}")
    os.chmod(dest_dir, 0o711)   # the jailed git, unprivileged, must reach its directory
    try:
        return resolve_commit(ref.remote, ref.ref, dest_dir / "ls-remote",
                              host_network=opts.host_network)
    except GitError as exc:
        raise ContextError(f"failed to fetch {url}: {exc.message}",
                           hint=_git_hint(exc, opts)) from exc


@contextmanager
def fetch_git(url: str, dest_dir: Path, opts: AddOptions,
              expect: str | None = None) -> Iterator[Path]:
    """Check out a git source into ``dest_dir/checkout`` and yield the directory to add
    (the ``#ref:subdir`` subdirectory, resolved inside the checkout); removed on exit.

    git runs jailed, in a private network unless ``opts.host_network`` (see
    :mod:`distill.sandbox.git`): no name check before it runs could keep it off the
    host's loopback. ``dest_dir`` (distill's own) is made searchable (0711) so that the
    jail's unprivileged user can reach ``checkout``, its own 0700 directory inside."""
    ref = parse_git_ref(url, allow_file=True)
    if ref is None:
        raise ContextError(f"not a git repository URL: {url}")
    keep = opts.keep_git_dir
    if ref.keep_git_dir is not None:
        if opts.keep_git_dir and not ref.keep_git_dir:
            raise ContextError("inconsistent keep-git-dir configuration")
        keep = ref.keep_git_dir
    checksum = opts.checksum
    if ref.checksum:
        if checksum and checksum != ref.checksum:
            raise ContextError(f"checksum mismatch {checksum!r} != {ref.checksum!r}")
        checksum = ref.checksum
    checkout = dest_dir / "checkout"
    os.chmod(dest_dir, 0o711)   # the jailed git, unprivileged, must reach its checkout
    try:
        try:
            commit = clone(ref.remote, ref.ref, checkout, keep, submodules=ref.submodules,
                           host_network=opts.host_network)
        except GitError as exc:
            raise ContextError(f"failed to fetch {url}: {exc.message}",
                               hint=_git_hint(exc, opts)) from exc
        if checksum and not commit.startswith(checksum.lower()):
            raise ContextError(f"checksum mismatch for {url}: expected commit "
                               f"{checksum}, got {commit}")
        if expect is not None and commit != expect:   # keyed on one commit, got another
            raise ContextError(f"{url} moved to commit {commit} while the build ran "
                               f"(it was {expect})", hint="build again")
        result = checkout
        if ref.subdir:
            result = resolve_in_root(checkout, ref.subdir)
            if not result.is_dir():
                raise ContextError(f"subdirectory {ref.subdir!r} not found in {url}")
        yield result
    finally:
        if checkout.exists():
            shutil.rmtree(checkout)
