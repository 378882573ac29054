"""verify_clearsigned with throwaway keys made by gpg, and the strict clearsign splitter."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from distill.errors import VerificationError
from distill.sandbox.gpg import split_clearsigned, verify_clearsigned

needs_gpg = pytest.mark.skipif(shutil.which("gpg") is None or shutil.which("gpgv") is None,
                               reason="gpg and gpgv are needed to make and check signatures")

TEXT = b"""Origin: Test
Suite: testing
SHA256:
 0123  42 main/binary-amd64/Packages
-----BEGIN PGP SIGNATURE----- (a line that must be dash-escaped)
- a line starting with a dash
"""


@dataclass
class Signer:
    home: Path
    keyring: Path

    def gpg(self, *args: str, input: bytes | None = None) -> bytes:
        proc = subprocess.run(["gpg", "--homedir", str(self.home), "--batch", "--quiet",
                               "--pinentry-mode", "loopback", "--passphrase", "", *args],
                              input=input, capture_output=True, check=True)
        return proc.stdout

    def clearsign(self, text: bytes, *extra: str) -> bytes:
        return self.gpg("--clearsign", *extra, input=text)


def _signer(tmp: Path, name: str, *keygen: str, faked: str | None = None) -> Signer:
    home = tmp / name
    home.mkdir(mode=0o700)
    signer = Signer(home, tmp / f"{name}.gpg")
    time = [f"--faked-system-time={faked}"] if faked else []
    signer.gpg(*time, "--quick-gen-key", f"{name} <{name}@example.org>", *keygen)
    signer.keyring.write_bytes(signer.gpg("--export"))
    return signer


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Signer]]:
    tmp = tmp_path_factory.mktemp("gpg")
    made = {
        "good": _signer(tmp, "good", "ed25519", "sign", "0"),
        "other": _signer(tmp, "other", "ed25519", "sign", "0"),
        "rsa": _signer(tmp, "rsa", "rsa1024", "sign", "0"),
        "expired": _signer(tmp, "expired", "ed25519", "sign", "1d",
                           faked="20200101T000000!"),
    }
    try:
        yield made
    finally:
        for signer in made.values():
            subprocess.run(["gpgconf", "--homedir", str(signer.home), "--kill", "gpg-agent"],
                           capture_output=True, check=False)


@needs_gpg
def test_good_signature_returns_exactly_the_signed_text(keys: dict[str, Signer]) -> None:
    signed = keys["good"].clearsign(TEXT)
    assert b"\n- -----BEGIN PGP SIGNATURE----- (a line" in signed  # gpg dash-escaped it
    assert verify_clearsigned(signed, keys["good"].keyring) == TEXT


@needs_gpg
def test_armored_keyring(keys: dict[str, Signer], tmp_path: Path) -> None:
    armored = tmp_path / "key.asc"
    armored.write_bytes(keys["good"].gpg("--armor", "--export"))
    assert verify_clearsigned(keys["good"].clearsign(TEXT), armored) == TEXT


@needs_gpg
def test_changed_text_is_a_bad_signature(keys: dict[str, Signer]) -> None:
    signed = keys["good"].clearsign(TEXT)
    with pytest.raises(VerificationError, match="BAD signature"):
        verify_clearsigned(signed.replace(b"0123  42", b"0124  42"), keys["good"].keyring)


@needs_gpg
def test_trailing_blanks_are_not_signed_and_not_returned(keys: dict[str, Signer]) -> None:
    signed = keys["good"].clearsign(TEXT)
    padded = signed.replace(b"Suite: testing\n", b"Suite: testing  \t\n")
    assert verify_clearsigned(padded, keys["good"].keyring) == TEXT


@needs_gpg
@pytest.mark.parametrize("wrap", [
    lambda s: b"Origin: Evil\n\n" + s,                       # unsigned text before
    lambda s: s + b"Origin: Evil\n",                        # unsigned text after
    lambda s: s + s,                                        # two signed blocks
    lambda s: s.replace(b"Hash: SHA512\n", b"Hash: SHA512\nComment: x\n"),
])
def test_text_outside_the_signed_block_is_refused(keys: dict[str, Signer], wrap: object) -> None:
    signed = keys["good"].clearsign(TEXT, "--digest-algo", "SHA512")
    with pytest.raises(VerificationError):
        verify_clearsigned(wrap(signed), keys["good"].keyring)  # type: ignore[operator]


@needs_gpg
def test_signer_missing_from_the_keyring(keys: dict[str, Signer]) -> None:
    signed = keys["good"].clearsign(TEXT)
    with pytest.raises(VerificationError, match="not in the keyring"):
        verify_clearsigned(signed, keys["other"].keyring)


@needs_gpg
def test_expired_key_is_refused(keys: dict[str, Signer]) -> None:
    signed = keys["expired"].clearsign(TEXT, "--faked-system-time=20200101T120000!")
    with pytest.raises(VerificationError, match="expired key"):
        verify_clearsigned(signed, keys["expired"].keyring)


@needs_gpg
def test_weak_digest_is_refused(keys: dict[str, Signer]) -> None:
    rsa = keys["rsa"]
    assert verify_clearsigned(rsa.clearsign(TEXT, "--digest-algo", "SHA256"),
                              rsa.keyring) == TEXT
    with pytest.raises(VerificationError, match="weak digest"):
        verify_clearsigned(rsa.clearsign(TEXT, "--digest-algo", "SHA1"), rsa.keyring)


@needs_gpg
def test_missing_keyring_or_gpgv(keys: dict[str, Signer], tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    signed = keys["good"].clearsign(TEXT)
    with pytest.raises(VerificationError, match="does not exist"):
        verify_clearsigned(signed, tmp_path / "nothing.gpg")
    empty = tmp_path / "empty.gpg"
    empty.write_bytes(b"")
    with pytest.raises(VerificationError):
        verify_clearsigned(signed, empty)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(VerificationError, match="gpgv is not installed"):
        verify_clearsigned(signed, keys["good"].keyring)


SIGNATURE = b"-----BEGIN PGP SIGNATURE-----\n\nAAAA\n=AAAA\n-----END PGP SIGNATURE-----\n"
HEAD = b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n"


def test_split_unescapes_and_keeps_the_block() -> None:
    data = HEAD + b"a\n- -b\n- c\n" + SIGNATURE + b"\n\n"
    parts = split_clearsigned(data)
    assert parts.text == b"a\n-b\nc\n"
    assert parts.block == HEAD + b"a\n- -b\n- c\n" + SIGNATURE


def test_split_accepts_crlf() -> None:
    data = (HEAD + b"a\n" + SIGNATURE).replace(b"\n", b"\r\n")
    assert split_clearsigned(data).text == b"a\n"


@pytest.mark.parametrize(("data", "message"), [
    (b"", "must start with"),
    (b"\n" + HEAD + b"a\n" + SIGNATURE, "must start with"),
    (HEAD + b"-b\n" + SIGNATURE, "not dash-escaped"),
    (HEAD + b"a\n" + HEAD + b"b\n" + SIGNATURE, "not dash-escaped"),
    (HEAD + b"a\n-----BEGIN PGP SIGNATURE-----\n\nAAAA\n", "not terminated"),
    (HEAD + b"a\n" + SIGNATURE + b"more\n", "data after the signature"),
    (HEAD.replace(b"Hash: SHA256", b"Charset: UTF-8") + b"a\n" + SIGNATURE, "armor header"),
    (b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256", "no signed text"),
])
def test_split_refuses_malformed_files(data: bytes, message: str) -> None:
    with pytest.raises(VerificationError, match=message):
        split_clearsigned(data)
