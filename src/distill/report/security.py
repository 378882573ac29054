"""The security view of an image's final file tree: what an attacker who gets into the
container finds there, each finding traced to the layer and instruction that put it there.

Categories, and the severity each gets:

=================  ========  ==========================================================
category           severity  what
=================  ========  ==========================================================
secret             high      a private key (found by content), a credential file
                             (``.env``, ``.aws/credentials``, gcloud and Azure logins,
                             ``.docker/config.json``, ``.npmrc``, ``.pypirc``, ``.netrc``,
                             ``.git-credentials``, ``.kube/config``), a PKCS#12 bundle
secret             medium    a ``.git`` directory (source history; remotes may hold tokens)
setuid             high      a regular file with the setuid bit, owned by root
setuid             medium    the same, owned by another user
setgid             medium    a regular file with the setgid bit
world-writable     medium    a file, or a directory without the sticky bit, others may
                             write (``/tmp`` with ``1777`` is fine)
root-user          medium    the config's User is root (or empty)
shell              low       sh, bash, busybox ... in a ``bin`` or ``sbin`` directory
package-manager    low       apt, dpkg, apk, pip, npm ...
compiler           low       gcc, clang, go, rustc, javac ...
interpreter        info      python, perl, node, ruby, java ... (often the image's point)
=================  ========  ==========================================================

Programs are looked for in every directory named ``bin`` or ``sbin`` (``/usr/local/bin``
and ``/opt/java/bin`` alike), by the name they are run by: an executable file, a hard
link, or a symlink that resolves to something in the image (``/bin/sh -> busybox`` is a
shell; ``/bin/ls -> busybox`` is not, busybox's applets are named by their link).

Private keys are recognised by content: ``SecretsCollector`` asks for the first 4 KiB of
small files whose names suggest key material (``*.pem``, ``*.key``, ``id_rsa`` ...), so a
``.pem`` certificate is not a finding; a key placed after 4 KiB of certificates is missed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from distill.report.analyze import Analysis
from distill.report.filetree import FileTree, Placed
from distill.report.layerfiles import Entry, LayerFiles, clean

SEVERITIES = ("high", "medium", "low", "info")

#: the collector's name in ``FileTree.found``
SECRETS = "secrets"
#: leading bytes read of a file that may be a key; files larger than KEY_FILE_MAX are not read
KEY_HEAD = 4096
KEY_FILE_MAX = 1 << 20
#: files up to this size are read for keys whatever their name
SMALL_FILE = 64 << 10

_PEM_KEY = re.compile(rb"-----BEGIN ((?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?)-----")
_KEY_SUFFIXES = (".pem", ".key", ".ppk")
_SSH_KEYS = re.compile(r"id_(?:rsa|dsa|ecdsa|ed25519|ecdsa_sk|ed25519_sk|xmss)|.+_key")

_TOOLS: tuple[tuple[str, str, re.Pattern[str]], ...] = (
    ("shell", "low", re.compile(
        r"(?:sh|bash|rbash|dash|ash|zsh|ksh|mksh|pdksh|csh|tcsh|fish|busybox|toybox)")),
    ("package-manager", "low", re.compile(
        r"apt|apt-get|aptitude|dpkg|apk|yum|dnf|dnf5|microdnf|tdnf|rpm|zypper|pacman"
        r"|pip[0-9.]*|npm|npx|yarn|pnpm|gem|composer|conda|mamba|uv")),
    ("compiler", "low", re.compile(
        r"(?:[a-z0-9_]+-linux-gnu[a-z]*-)?(?:gcc|g\+\+|cc|c\+\+|clang|clang\+\+|tcc"
        r"|gfortran)(?:-[0-9.]+)?|go|rustc|javac")),
    ("interpreter", "info", re.compile(
        r"python[0-9.]*|pypy[0-9.]*|perl[0-9.]*|node|nodejs|deno|bun|ruby[0-9.]*"
        r"|php[0-9.]*|java|lua[0-9.]*|luajit|tclsh[0-9.]*|Rscript|R")),
)
#: multi-call binaries: a link to one is the program its own name says
_MULTI_CALL = {"busybox", "toybox"}
_BIN_DIRS = {"bin", "sbin"}

#: (path suffix, what) of credential files; matched on whole path components
_CREDENTIAL_FILES = (
    (".aws/credentials", "AWS credentials"),
    (".config/gcloud/credentials.db", "gcloud credentials"),
    (".config/gcloud/access_tokens.db", "gcloud access tokens"),
    (".config/gcloud/application_default_credentials.json",
     "gcloud application default credentials"),
    (".docker/config.json", "Docker client config (registry logins)"),
    (".kube/config", "kubeconfig"),
    (".npmrc", "npm config (registry tokens)"),
    (".pypirc", "PyPI config (upload credentials)"),
    (".netrc", "netrc (login passwords)"),
    (".git-credentials", "git credentials"),
)
_ENV_TEMPLATES = {".env.example", ".env.sample", ".env.template", ".env.dist"}
_CREDENTIAL_DIRS = {
    ".git": ("medium", "git directory (source history; remotes may hold tokens)"),
    ".azure": ("high", "Azure CLI login"),
}
_BUNDLES = (".p12", ".pfx")

_USER_INSTRUCTION = re.compile(r"(?:/bin/sh -c )?(?:#\(nop\)\s*)?USER\s")


@dataclass(frozen=True)
class Finding:
    category: str
    severity: str         # one of SEVERITIES
    path: str             # "/etc/ssl/private/x.key"; "" for root-user
    layer: int | None     # the layer that put the path there; None for root-user
    instruction: str      # what made that layer (or set USER)
    detail: str


class SecretsCollector:
    """Reads the head of every small file, and of larger ones named like key material;
    finds private keys (a key is small: a file under SMALL_FILE bytes is read whatever
    its name, so `/opt/notes.txt` holding a key is found)."""

    name: str = SECRETS

    def wants(self, entry: Entry) -> int:
        if entry.size > KEY_FILE_MAX:
            return 0
        name = entry.name
        if entry.size <= SMALL_FILE or name.endswith(_KEY_SUFFIXES) \
                or _SSH_KEYS.fullmatch(name):
            return KEY_HEAD
        return 0

    def parse(self, entry: Entry, data: bytes) -> object | None:
        return private_key(data)


def private_key(data: bytes) -> str | None:
    """What kind of private key ``data`` (a file's head) holds, or None."""
    if data.startswith(b"PuTTY-User-Key-File-"):
        locked = re.search(rb"^Encryption: (?!none\b)", data, re.MULTILINE) is not None
        return "PuTTY private key" + (" (passphrase-protected)" if locked else "")
    match = _PEM_KEY.search(data)
    if match is None:
        return None
    label = match.group(1).decode()
    encrypted = "ENCRYPTED" in label or b"Proc-Type: 4,ENCRYPTED" in data[match.end():]
    return f"PEM {label}" + (" (passphrase-protected)" if encrypted else "")


def runs_as_root(user: str) -> bool:
    """Whether a config's User ("", "root", "0", "0:0", "root:staff" ...) is root."""
    name = user.partition(":")[0].strip()
    return name in ("", "root") or (name.isdigit() and int(name) == 0)


def findings(analysis: Analysis) -> list[Finding]:
    """The findings for an analysed image (analyse it with ``SecretsCollector()`` for
    private keys to be found by content): what the final image shows, and the secrets a
    later layer deleted or overwrote, which every layer's blob still hands out."""
    image = analysis.image
    instructions = [layer.created_by for layer in analysis.layers]
    found = tree_findings(analysis.tree, user=image.runtime.user, instructions=instructions,
                          history=[h.created_by for h in image.config.history])
    rank = {severity: i for i, severity in enumerate(SEVERITIES)}
    return sorted(found + buried_secrets(analysis.tree, analysis.layer_files, instructions),
                  key=lambda f: (rank[f.severity], f.path, f.category, f.detail))


def buried_secrets(tree: FileTree, layers: Sequence[LayerFiles],
                   instructions: Sequence[str]) -> list[Finding]:
    """Secrets in a layer that the final image does not show (``RUN rm key`` after
    ``COPY key``): anyone who pulls the image has the layer, and the secret in it."""
    out = []
    for index, layer in enumerate(layers):
        instruction = instructions[index] if index < len(instructions) else ""
        for entry in layer.entries:
            placed = tree.files.get(tree.real(entry.path))    # where stacking put it
            if placed is not None and placed.layer == index:
                continue             # shown, so found as the final image's
            said = [detail for category, _, detail in _credentials(entry)
                    if category == "secret"]
            value = layer.found.get((SECRETS, entry.path))
            if value is not None:
                said.append(str(value))
            for detail in said:
                out.append(Finding("secret", "high", "/" + entry.path, index, instruction,
                                   f"{detail}, removed by a later layer but still in "
                                   f"layer {index}"))
    return out


def tree_findings(tree: FileTree, *, user: str = "", instructions: Sequence[str] = (),
                  history: Sequence[str] = ()) -> list[Finding]:
    """The findings for ``tree``: ``user`` is the config's User, ``instructions[i]`` what
    made layer i, ``history`` every history entry's created_by (for the USER instruction).
    Sorted by severity, then path."""

    def made(placed: Placed, category: str, severity: str, detail: str) -> Finding:
        layer = placed.layer
        instruction = instructions[layer] if 0 <= layer < len(instructions) else ""
        return Finding(category, severity, "/" + placed.entry.path, layer, instruction,
                       detail)

    out: list[Finding] = []
    for placed in tree.files.values():
        for category, severity, detail in _look_at(tree, placed):
            out.append(made(placed, category, severity, detail))
    for path, (_, value) in tree.found_by(SECRETS).items():
        out.append(made(tree.files[path], "secret", "high", str(value)))
    if runs_as_root(user):
        said = [h for h in history if _USER_INSTRUCTION.match(h.strip())]
        out.append(Finding("root-user", "medium", "", None,
                           said[-1].strip() if said else "no USER instruction",
                           f"runs as root (User is {user!r})" if user
                           else "runs as root (no User in the config)"))
    rank = {severity: i for i, severity in enumerate(SEVERITIES)}
    return sorted(out, key=lambda f: (rank[f.severity], f.path, f.category, f.detail))


def findings_json(found: Sequence[Finding]) -> list[dict[str, Any]]:
    return [asdict(f) for f in found]


# -- what one path is -----------------------------------------------------------------
def _look_at(tree: FileTree, placed: Placed) -> Iterator[tuple[str, str, str]]:
    """(category, severity, detail) of each finding about one path."""
    entry = _effective(tree, placed.entry)
    yield from _modes(entry)
    yield from _credentials(entry)
    parent = entry.path.rpartition("/")[0]
    if parent.rpartition("/")[2] in _BIN_DIRS:
        yield from _program(tree, entry)


def _effective(tree: FileTree, entry: Entry) -> Entry:
    """A hard link as it is on disk: the inode it shares, so its file's mode and owner
    (a runtime keeps the file's: a link's own header cannot hide an executable shell
    behind mode 0644, as an attacker's image tried)."""
    if entry.kind != "hardlink":
        return entry
    target = tree.files.get(entry.link)
    if target is None or target.entry.kind != "file":
        return entry
    return replace(entry, mode=target.entry.mode, uid=target.entry.uid,
                   gid=target.entry.gid)


def _modes(entry: Entry) -> Iterator[tuple[str, str, str]]:
    owner = f"mode {entry.mode:04o}, owner {entry.uid}:{entry.gid}"
    if entry.kind in ("file", "hardlink"):
        if entry.mode & 0o4000:
            yield "setuid", "high" if entry.uid == 0 else "medium", owner
        if entry.mode & 0o2000:
            yield "setgid", "medium", owner
    writable = entry.mode & 0o002
    if writable and (entry.kind == "file" or
                     (entry.kind == "dir" and not entry.mode & 0o1000)):
        yield "world-writable", "medium", owner


def _credentials(entry: Entry) -> Iterator[tuple[str, str, str]]:
    name = entry.name
    if entry.kind == "dir":
        if name in _CREDENTIAL_DIRS:
            yield ("secret", *_CREDENTIAL_DIRS[name])
        return
    if entry.kind != "file":
        return
    path = "/" + entry.path
    for suffix, what in _CREDENTIAL_FILES:
        if path.endswith("/" + suffix):
            yield "secret", "high", what
    if (name == ".env" or name.startswith(".env.")) and name not in _ENV_TEMPLATES:
        yield "secret", "high", "environment file"
    if name.lower().endswith(_BUNDLES):
        yield "secret", "high", "PKCS#12 bundle (usually holds a private key; by name)"


def _program(tree: FileTree, entry: Entry) -> Iterator[tuple[str, str, str]]:
    """The kind of program ``entry`` (in a bin directory) is, if it is one."""
    detail = ""
    target = ""
    if entry.kind in ("file", "hardlink"):
        if not entry.mode & 0o111:
            return
        if entry.kind == "hardlink":
            target = entry.link
            detail = f"hard link to /{target}"
    elif entry.kind == "symlink":
        resolved = _resolve(tree, entry.path)
        if resolved is None or tree.files[resolved].entry.kind == "dir":
            return                      # dangling, a loop, or a directory
        target = resolved
        detail = f"symlink to /{target}"
    else:
        return
    names = [entry.name]
    target_name = target.rpartition("/")[2]
    if target_name and target_name not in _MULTI_CALL:
        names.append(target_name)
    for name in names:
        for category, severity, pattern in _TOOLS:
            if pattern.fullmatch(name):
                yield category, severity, detail or "executable file"
                return


def _resolve(tree: FileTree, path: str, hops: int = 40) -> str | None:
    """Where ``path`` leads inside the image, following symlinks (its own and its
    parents', through the tree's bounded walk); None if that is nowhere or takes more
    than ``hops`` links."""
    current = path
    for _ in range(hops + 1):
        current = tree.real(clean(current))
        placed = tree.files.get(current)
        if placed is None:
            return None
        if placed.entry.kind != "symlink":
            return current or None
        link = placed.entry.link
        base = "" if link.startswith("/") else current.rpartition("/")[0]
        current = f"{base}/{link}"
    return None
