"""OpenPGP clearsigned files checked with ``gpgv`` (the archive's InRelease).

The file is split strictly before anything is verified (one signed block; nothing
before it, only blank lines after it; dash-escaping respected), the block is handed to
``gpgv``, and the signed text is returned only when gpgv's machine-readable status says a
key from the keyring made a good signature with a strong digest. The text gpgv itself
extracted must agree with ours, so what we return is exactly what was signed.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from distill import owned
from distill.errors import VerificationError

_BEGIN_MESSAGE = b"-----BEGIN PGP SIGNED MESSAGE-----"
_BEGIN_SIGNATURE = b"-----BEGIN PGP SIGNATURE-----"
_END_SIGNATURE = b"-----END PGP SIGNATURE-----"
_BEGIN_KEYS = b"-----BEGIN PGP PUBLIC KEY BLOCK-----"
_END_KEYS = b"-----END PGP PUBLIC KEY BLOCK-----"
# OpenPGP hash algorithm ids apt also refuses: MD5, SHA-1, RIPEMD-160.
_WEAK_DIGESTS = frozenset({"1", "2", "3"})
_TIMEOUT = 60.0


@dataclass(frozen=True)
class ClearSigned:
    """The parts of a clearsigned file: the signed text and the whole armored block."""

    text: bytes
    block: bytes


def verify_clearsigned(data: bytes, keyring: Path) -> bytes:
    """Return the text ``data`` signs, if a key in ``keyring`` made a good signature.

    Raises VerificationError for anything else: a malformed or ambiguous file, a bad
    signature, a signer missing from the keyring, an expired or revoked key, a weak
    digest, or a missing ``gpgv``.
    """
    parts = split_clearsigned(data)
    gpgv = shutil.which("gpgv")
    if gpgv is None:
        raise VerificationError("cannot verify signatures: gpgv is not installed",
                                hint="apt-get install gpgv")
    if not keyring.is_file():
        raise VerificationError(f"keyring {keyring} does not exist (or is not a file)",
                                hint="apt-get install debian-archive-keyring")
    with owned.temp_dir("distill-gpgv-") as home:
        home.chmod(0o700)
        signed = home / "signed.asc"
        signed.write_bytes(parts.block)
        out = home / "text"
        argv = [gpgv, "--homedir", str(home), "--status-fd", "1", "--output", str(out),
                "--keyring", str(_usable_keyring(keyring, home)), str(signed)]
        try:
            proc = subprocess.run(argv, check=False, capture_output=True,
                                  timeout=_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise VerificationError(f"gpgv could not run: {exc}") from exc
        status = _Status.parse(proc.stdout.decode("utf-8", "replace"))
        problem = status.problem()
        if problem is not None:
            detail = proc.stderr.decode("utf-8", "replace").strip()
            raise VerificationError(f"signature check failed: {problem}",
                                    hint=detail or None)
        extracted = out.read_bytes() if out.exists() else b""
    if _normalize(extracted) != parts.text:
        raise VerificationError("signature check failed: the text gpgv verified is not "
                                "the text of the signed block")
    return parts.text


def split_clearsigned(data: bytes) -> ClearSigned:
    """Split a clearsigned file strictly (RFC 4880 section 7); VerificationError if malformed."""
    lines = [line.rstrip(b"\r") for line in data.split(b"\n")]
    if not lines or lines[0].rstrip(b" \t") != _BEGIN_MESSAGE:
        raise VerificationError("not a clearsigned file: it must start with "
                                f"{_BEGIN_MESSAGE.decode()}")
    i = 1
    while i < len(lines) and lines[i].strip():
        if not lines[i].startswith(b"Hash: "):
            raise VerificationError(f"clearsigned file: unexpected armor header {lines[i]!r}")
        i += 1
    if i >= len(lines):
        raise VerificationError("clearsigned file: no signed text")
    i += 1
    text: list[bytes] = []
    while i < len(lines) and lines[i].rstrip(b" \t") != _BEGIN_SIGNATURE:
        line = lines[i]
        if line.startswith(b"- "):
            line = line[2:]
        elif line.startswith(b"-"):
            raise VerificationError(f"clearsigned file: line {i + 1} is not dash-escaped: "
                                    f"{line[:60]!r}")
        text.append(line.rstrip(b" \t"))
        i += 1
    start_sig = i
    while i < len(lines) and lines[i].rstrip(b" \t") != _END_SIGNATURE:
        if i > start_sig and lines[i].startswith(b"-----"):
            raise VerificationError(f"clearsigned file: unexpected {lines[i][:40]!r} "
                                    "inside the signature")
        i += 1
    if i >= len(lines):
        raise VerificationError("clearsigned file: the signature block is not terminated")
    if any(line.strip() for line in lines[i + 1:]):
        raise VerificationError("clearsigned file: data after the signature block")
    block = b"\n".join(lines[: i + 1]) + b"\n"
    return ClearSigned(text=b"".join(line + b"\n" for line in text), block=block)


def _normalize(text: bytes) -> bytes:
    """gpgv's output with the clearsign canonicalization applied (no trailing blanks)."""
    if not text:
        return b""
    lines = text.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return b"".join(line.rstrip(b"\r").rstrip(b" \t") + b"\n" for line in lines)


def _usable_keyring(keyring: Path, home: Path) -> Path:
    """gpgv reads binary keyrings only; an ASCII-armored one (``.asc``) is de-armored."""
    with keyring.open("rb") as f:
        head = f.read(len(_BEGIN_KEYS) + 64).lstrip()
    if not head.startswith(_BEGIN_KEYS):
        return keyring.resolve()
    binary = b""
    for block in keyring.read_bytes().split(_BEGIN_KEYS)[1:]:
        body, sep, _ = block.partition(_END_KEYS)
        if not sep:
            raise VerificationError(f"keyring {keyring}: unterminated public key block")
        body = body.replace(b"\r", b"")
        payload = body.split(b"\n\n", 1)[1] if b"\n\n" in body else body  # skip headers
        b64 = b"".join(line.strip() for line in payload.split(b"\n")
                       if line.strip() and not line.startswith(b"="))  # "=" starts the CRC
        try:
            binary += base64.b64decode(b64, validate=True)
        except ValueError as exc:
            raise VerificationError(f"keyring {keyring}: bad armor: {exc}") from exc
    out = home / "keyring.gpg"
    out.write_bytes(binary)
    return out


@dataclass
class _Signature:
    good: bool = False
    valid: bool = False
    weak_digest: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass
class _Status:
    signatures: list[_Signature]

    @classmethod
    def parse(cls, text: str) -> _Status:
        sigs: list[_Signature] = []
        for line in text.splitlines():
            if not line.startswith("[GNUPG:] "):
                continue
            keyword, *args = line[9:].split()
            if keyword == "NEWSIG" or not sigs:
                sigs.append(_Signature())
                if keyword == "NEWSIG":
                    continue
            sig = sigs[-1]
            if keyword == "GOODSIG":
                sig.good = True
            elif keyword == "VALIDSIG":
                sig.valid = True
                sig.weak_digest = len(args) > 7 and args[7] in _WEAK_DIGESTS
            elif keyword == "BADSIG":
                sig.notes.append(f"BAD signature from key {_arg(args, 0)}")
            elif keyword == "ERRSIG":
                reason = "key not in the keyring" if _arg(args, 5) == "9" else "cannot check"
                sig.notes.append(f"signature by key {_arg(args, 0)}: {reason}")
            elif keyword in ("EXPKEYSIG", "REVKEYSIG", "EXPSIG"):
                what = {"EXPKEYSIG": "expired key", "REVKEYSIG": "revoked key",
                        "EXPSIG": "expired signature"}[keyword]
                sig.notes.append(f"signature by {what} {_arg(args, 0)}")
            elif keyword == "NODATA":
                sig.notes.append("no signature found")
        return cls(sigs)

    def problem(self) -> str | None:
        """None if at least one signature is good and none is bad; else the reason."""
        notes = [note for sig in self.signatures for note in sig.notes]
        bad = [note for note in notes if note.startswith("BAD")]
        if bad:
            return "; ".join(bad)
        if any(sig.good and sig.valid and not sig.weak_digest for sig in self.signatures):
            return None
        if any(sig.good and sig.weak_digest for sig in self.signatures):
            notes.append("signed with a weak digest algorithm (MD5/SHA-1/RIPEMD-160)")
        return "; ".join(notes) or "no good signature"


def _arg(args: list[str], index: int) -> str:
    return args[index] if index < len(args) else "?"
