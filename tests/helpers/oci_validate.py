"""Offline validation of OCI documents and image layouts (a test helper shipped with the library).

A document passes when upstream image-spec v1.1.1's ``schema.Validator`` would pass it
(``shared/conformance/README.md``, section 5):

1. the bytes are valid JSON that decodes into image-spec's Go struct for the media type:
   a JSON type mismatch on a known field fails (Go matches field names case-insensitively,
   and ``null`` leaves a field alone), and every descriptor ``data`` is padded base64;
2. descriptor media type only: a registered digest algorithm needs exact lowercase hex;
3. config media type only: every ``config.Env`` entry matches ``^[^=]+=.*$``;
4. the draft-04 JSON schema passes with ``format`` asserted (``uri`` needs a scheme,
   ``date-time`` is RFC 3339), every ``$ref`` resolved from the schemas in
   ``tests/helpers/oci_schema`` (no network).

Regular expressions keep Go semantics: ``$`` is the end of the text, never "before a
final newline" as in Python. Needs ``jsonschema`` and ``referencing`` (the ``test`` extra).
"""

from __future__ import annotations

import base64
import calendar
import functools
import hashlib
import ipaddress
import json
import re
from pathlib import Path
from typing import Any, TypeAlias

from jsonschema import Draft4Validator, FormatChecker  # type: ignore[import-untyped]
from jsonschema.exceptions import best_match  # type: ignore[import-untyped]
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from distill.errors import DigestMismatchError, ImageError

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
DESCRIPTOR = "application/vnd.oci.descriptor.v1+json"
LAYOUT_HEADER = "application/vnd.oci.layout.header.v1+json"

# --- Go struct shapes (image-spec v1.1.1 specs-go/v1) ---------------------------------------
# A shape is a scalar kind (str), ("list", shape), ("map", shape), or a struct {field: shape}.
Shape: TypeAlias = str | tuple[str, "Shape"] | dict[str, "Shape"]

_PLATFORM: dict[str, Shape] = {
    "architecture": "string",
    "os": "string",
    "os.version": "string",
    "os.features": ("list", "string"),
    "variant": "string",
}
_DESCRIPTOR: dict[str, Shape] = {
    "mediaType": "string",
    "digest": "string",
    "size": "int",
    "urls": ("list", "string"),
    "annotations": ("map", "string"),
    "data": "bytes",
    "platform": _PLATFORM,
    "artifactType": "string",
}
_MANIFEST: dict[str, Shape] = {
    "schemaVersion": "int",
    "mediaType": "string",
    "artifactType": "string",
    "config": _DESCRIPTOR,
    "layers": ("list", _DESCRIPTOR),
    "subject": _DESCRIPTOR,
    "annotations": ("map", "string"),
}
_INDEX: dict[str, Shape] = {
    "schemaVersion": "int",
    "mediaType": "string",
    "artifactType": "string",
    "manifests": ("list", _DESCRIPTOR),
    "subject": _DESCRIPTOR,
    "annotations": ("map", "string"),
}
_IMAGE_CONFIG: dict[str, Shape] = {
    "User": "string",
    "ExposedPorts": ("map", "empty"),
    "Env": ("list", "string"),
    "Entrypoint": ("list", "string"),
    "Cmd": ("list", "string"),
    "Volumes": ("map", "empty"),
    "WorkingDir": "string",
    "Labels": ("map", "string"),
    "StopSignal": "string",
    "ArgsEscaped": "bool",
}
_HISTORY: dict[str, Shape] = {
    "created": "time",
    "created_by": "string",
    "author": "string",
    "comment": "string",
    "empty_layer": "bool",
}
_IMAGE: dict[str, Shape] = {
    "created": "time",
    "author": "string",
    **_PLATFORM,  # embedded struct: its fields are promoted
    "config": _IMAGE_CONFIG,
    "rootfs": {"type": "string", "diff_ids": ("list", "string")},
    "history": ("list", _HISTORY),
}
# The layout header has no Go-side check upstream: only JSON + schema.
_GO_SHAPES: dict[str, dict[str, Shape]] = {
    MANIFEST: _MANIFEST,
    INDEX: _INDEX,
    CONFIG: _IMAGE,
    DESCRIPTOR: _DESCRIPTOR,
}

_INT64 = range(-(2**63), 2**63)
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.[0-9]+)?(?:Z|[+-]([0-9]{2}):([0-9]{2}))"
)
_ENV = re.compile(r"[^=]+=.*")  # used with fullmatch: Go's ^[^=]+=.*$
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_HEX = re.compile(r"[a-f0-9]+")
_REGISTERED_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
_URI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_USERINFO = re.compile(r"[A-Za-z0-9\-._:~!$&'()*+,;=%@]*")
_PORT = re.compile(r"(?::[0-9]*)?")
_HOST = re.compile(
    r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:\[\]<>\"\x80-\U0010ffff]|%25|%[89A-Fa-f][0-9A-Fa-f])*"
)
_GO_FOLD = {"\u017f": "S", "\u212a": "K"}  # non-ASCII runes that fold onto ASCII letters


class _Object(dict[str, Any]):
    """A decoded JSON object that also keeps every member in order, duplicates included."""

    __slots__ = ("members",)

    def __init__(self, members: list[tuple[str, Any]]) -> None:
        super().__init__(members)
        self.members = members


# --- public API ----------------------------------------------------------------------------


def validate(document: bytes | str, media_type: str) -> None:
    """Raise ImageError unless ``document`` is a valid OCI document of ``media_type``."""
    validator = _schema_validators().get(media_type)
    if validator is None:
        raise ImageError(f"no OCI validator for media type {media_type!r}")
    value = _parse_json(document, media_type)
    shape = _GO_SHAPES.get(media_type)
    if shape is not None:
        _check_shape(value, shape, "$", media_type)
    if media_type == DESCRIPTOR:
        _check_descriptor_digest(value)
    if media_type == CONFIG:
        _check_config_env(value)
    error = best_match(validator.iter_errors(value))
    if error is not None:
        where = "$" + "".join(f"[{p!r}]" for p in error.absolute_path)
        raise ImageError(f"{media_type}: schema: {where}: {error.message}")


def validate_layout(path: Path) -> None:
    """Validate an OCI image layout directory and everything reachable from its index.json.

    Checks the ``oci-layout`` header, ``index.json``, and recursively every index, manifest
    and image config blob against its media type; every reachable blob (layers too) must
    exist with the size and digest of its descriptor. Raises ImageError (DigestMismatchError
    for a digest that does not match) on the first problem.
    """
    root = Path(path)
    validate(_read_file(root / "oci-layout"), LAYOUT_HEADER)
    index_bytes = _read_file(root / "index.json")
    validate(index_bytes, INDEX)
    _LayoutWalker(root).check_index(json.loads(index_bytes), "index.json")


# --- JSON + Go-side checks -----------------------------------------------------------------


def _parse_json(document: bytes | str, media_type: str) -> Any:
    """Decode strict JSON (UTF-8, no BOM, no NaN/Infinity) into _Object/list/scalars."""
    try:
        text = document.decode("utf-8") if isinstance(document, bytes) else document
        return json.loads(text, object_pairs_hook=_Object, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ImageError(f"{media_type}: not valid JSON: {exc}") from None


def _reject_constant(name: str) -> Any:
    """Refuse NaN/Infinity, which Python's json accepts and JSON does not."""
    raise ValueError(f"{name} is not JSON")


def _check_shape(value: Any, shape: Shape, where: str, media_type: str) -> None:
    """Fail where Go's json.Unmarshal into the typed struct would fail."""
    if value is None:  # null never fails: Go leaves the field as it was
        return
    if isinstance(shape, dict):
        obj = _expect(value, _Object, where, media_type, "an object")
        for key, member in obj.members:
            field = _go_field_name(key, shape)
            if field is not None:
                _check_shape(member, shape[field], f"{where}.{field}", media_type)
    elif isinstance(shape, tuple):
        kind, inner = shape
        if kind == "list":
            for i, item in enumerate(_expect(value, list, where, media_type, "an array")):
                _check_shape(item, inner, f"{where}[{i}]", media_type)
        else:
            for key, member in _expect(value, _Object, where, media_type, "an object").members:
                _check_shape(member, inner, f"{where}[{key!r}]", media_type)
    elif not _scalar_ok(value, shape):
        raise ImageError(f"{media_type}: {where}: {_describe(value)} is not a valid Go {shape}")


def _expect(value: Any, kind: type, where: str, media_type: str, what: str) -> Any:
    """Return value if it is an instance of kind, else raise a type-mismatch error."""
    if not isinstance(value, kind):
        raise ImageError(f"{media_type}: {where}: {_describe(value)} where Go expects {what}")
    return value


def _scalar_ok(value: Any, kind: str) -> bool:
    """Whether a non-null JSON value decodes into the Go scalar kind."""
    if kind == "string":
        return isinstance(value, str)
    if kind == "int":  # a float literal (1.0, 1e3) does not decode into a Go int
        return type(value) is int and value in _INT64
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "bytes":
        return isinstance(value, str) and _is_go_base64(value)
    if kind == "time":
        return isinstance(value, str) and _is_rfc3339(value)
    if kind == "empty":  # struct{}: any object
        return isinstance(value, _Object)
    raise AssertionError(f"unknown shape {kind!r}")


def _describe(value: Any) -> str:
    """A short description of a JSON value for error messages."""
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _go_fold(name: str) -> str:
    """Fold a key the way encoding/json matches it against field names."""
    return "".join(_GO_FOLD.get(c, c.upper() if c.isascii() else c) for c in name)


def _go_field_name(key: str, shape: dict[str, Shape]) -> str | None:
    """The struct field a JSON key decodes into: exact match first, then case-folded."""
    if key in shape:
        return key
    folded = _go_fold(key)
    return next((name for name in shape if _go_fold(name) == folded), None)


def _go_values(value: Any, field: str, shape: dict[str, Shape]) -> list[Any]:
    """Every non-null value that Go's decoder stores into ``field``, in document order."""
    if not isinstance(value, _Object):
        return []
    return [v for k, v in value.members if v is not None and _go_field_name(k, shape) == field]


def _is_go_base64(text: str) -> bool:
    """Go's base64.StdEncoding: padded, standard alphabet, CR and LF ignored."""
    return _BASE64.fullmatch(text.replace("\r", "").replace("\n", "")) is not None


def _check_descriptor_digest(value: Any) -> None:
    """go-digest's Digest.Validate, with unsupported (unregistered) algorithms accepted."""
    found = _go_values(value, "digest", _DESCRIPTOR)
    digest = found[-1] if found else ""
    algorithm, sep, encoded = digest.partition(":")
    if not algorithm or not sep or not encoded:
        raise ImageError(f"{DESCRIPTOR}: invalid digest format {digest!r}")
    length = _REGISTERED_HEX_LENGTHS.get(algorithm)
    if length is None:
        if _DIGEST.fullmatch(digest) is None:
            raise ImageError(f"{DESCRIPTOR}: invalid digest format {digest!r}")
        return
    if len(encoded) != length or _HEX.fullmatch(encoded) is None:
        raise ImageError(f"{DESCRIPTOR}: {algorithm} digest needs {length} lowercase hex digits")


def _check_config_env(value: Any) -> None:
    """Every config.Env entry must be NAME=VALUE (a null entry decodes to "")."""
    envs = [
        env
        for config in _go_values(value, "config", _IMAGE)
        for env in _go_values(config, "Env", _IMAGE_CONFIG)
    ]
    for entry in envs[-1] if envs else []:
        if _ENV.fullmatch(entry or "") is None:
            raise ImageError(f"{CONFIG}: unexpected env: {entry!r}")


# --- formats -------------------------------------------------------------------------------


def _is_rfc3339(value: object) -> bool:
    """RFC 3339 date-time as Go parses it: T and Z upper case, real dates, no 24:00 or :60."""
    if not isinstance(value, str):
        return True
    m = _RFC3339.fullmatch(value)
    if m is None:
        return False
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    offset_ok = m[7] is None or (int(m[7]) <= 23 and int(m[8]) <= 59)
    return (
        1 <= month <= 12
        and 1 <= day <= calendar.monthrange(year, month)[1]
        and hour <= 23
        and minute <= 59
        and second <= 59
        and offset_ok
    )


def _is_absolute_uri(value: object) -> bool:
    """A URI that Go's url.Parse accepts and that has a scheme (``u.IsAbs()``)."""
    if not isinstance(value, str):
        return True
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return False
    rest, _, fragment = value.partition("#")
    scheme = _URI_SCHEME.match(rest)
    if scheme is None or not _percent_ok(fragment):
        return False
    rest = rest[scheme.end() :].partition("?")[0]
    if not rest.startswith("//"):
        return True  # an opaque URI ("mailto:x") or a path, which Go does not check
    authority, slash, path = rest[2:].partition("/")
    return _authority_ok(authority) and _percent_ok(slash + path)


def _percent_ok(text: str) -> bool:
    """Every % starts a two-digit hex escape."""
    return _BAD_PERCENT.search(text) is None


def _authority_ok(authority: str) -> bool:
    """[userinfo@]host[:port] as Go's parseAuthority/parseHost accept it; IPv6 in brackets."""
    userinfo, at, host = authority.rpartition("@")
    if at and (_USERINFO.fullmatch(userinfo) is None or not _percent_ok(userinfo)):
        return False
    if host.startswith("["):
        close = host.rfind("]")
        if close < 0 or _PORT.fullmatch(host[close + 1 :]) is None:
            return False
        inner = host[1:close]
        return _HOST.fullmatch(inner) is not None and (":" not in inner or _is_ipv6(inner))
    name, colon, port = host.rpartition(":")
    if not colon:
        name = host
    elif _PORT.fullmatch(colon + port) is None or ":" in name:
        return False  # a bad port, or an IPv6 address without brackets
    return _HOST.fullmatch(name) is not None


def _is_ipv6(text: str) -> bool:
    """Go's net.ParseIP on a bracketed host (no zone)."""
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return "%" not in text


# --- schemas -------------------------------------------------------------------------------


@functools.cache
def _schema_validators() -> dict[str, Draft4Validator]:
    """One draft-04 validator per media type, over an offline registry of the shipped schemas."""
    schema_dir = Path(__file__).with_name("oci_schema")
    aliases = json.loads(schema_dir.joinpath("schema-aliases.json").read_text("utf-8"))
    contents: dict[str, Any] = {}
    entries: list[tuple[str, Resource[Any]]] = []
    for name, urls in aliases["schema_file_aliases"].items():
        contents[name] = _go_patterns(json.loads(schema_dir.joinpath(name).read_text("utf-8")))
        resource = DRAFT4.create_resource(contents[name])
        entries.extend((uri, resource) for uri in [name, *urls])
    registry: Registry[Any] = Registry().with_resources(entries)
    checker = FormatChecker(formats=())
    checker.checks("uri")(_is_absolute_uri)
    checker.checks("date-time")(_is_rfc3339)
    return {
        media_type: Draft4Validator(contents[name], registry=registry, format_checker=checker)
        for media_type, name in aliases["validator_media_type_to_schema"].items()
    }


def _go_patterns(schema: Any) -> Any:
    """Rewrite every ``pattern``/``patternProperties`` regex from Go to Python semantics."""
    if isinstance(schema, list):
        return [_go_patterns(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "pattern" and isinstance(value, str):
            out[key] = _go_regex(value)
        elif key == "patternProperties" and isinstance(value, dict):
            out[key] = {_go_regex(k): _go_patterns(v) for k, v in value.items()}
        else:
            out[key] = _go_patterns(value)
    return out


def _go_regex(pattern: str) -> str:
    """Make ``$`` (outside a character class) mean end of text, as in Go (RE2)."""
    out: list[str] = []
    i, in_class = 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            escape = pattern[i : i + 2]
            out.append(r"\Z" if escape == r"\z" and not in_class else escape)
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            j = i + 1 + (pattern[i + 1 : i + 2] == "^")
            if pattern[j : j + 1] == "]":  # a leading ] is a literal
                c, i = pattern[i : j + 1], j
        elif c == "$":
            c = r"\Z"
        out.append(c)
        i += 1
    return "".join(out)


# --- layouts -------------------------------------------------------------------------------


def _read_file(path: Path) -> bytes:
    """Read a small file of a layout, turning absence into an ImageError."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read {path}: {exc.strerror}") from None


class _LayoutWalker:
    """Walks the descriptor graph of one layout, verifying each blob once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.verified: set[str] = set()

    def check_index(self, index: dict[str, Any], where: str) -> None:
        """Check every descriptor an index lists."""
        for i, desc in enumerate(index["manifests"]):
            self.check_descriptor(desc, f"{where}: manifests[{i}]")

    def check_descriptor(self, desc: dict[str, Any], where: str) -> None:
        """Verify the blob behind a descriptor, and validate it if it is a known document."""
        media_type = desc["mediaType"]
        if media_type not in (INDEX, MANIFEST):
            self.verify_blob(desc, where)
            return
        data = self.read_document(desc, where)
        doc = json.loads(data)
        if doc.get("mediaType", media_type) != media_type:
            raise ImageError(f"{where}: document says mediaType {doc['mediaType']!r}")
        if media_type == INDEX:
            self.check_index(doc, f"{where} ({desc['digest']})")
        else:
            self.check_manifest(doc, f"{where} ({desc['digest']})")

    def check_manifest(self, manifest: dict[str, Any], where: str) -> None:
        """Validate the config of a manifest and verify its layers."""
        config = manifest["config"]
        if config["mediaType"] == CONFIG:
            image = json.loads(self.read_document(config, f"{where}: config"))
            diff_ids = image["rootfs"]["diff_ids"]
            if len(diff_ids) != len(manifest["layers"]):
                raise ImageError(
                    f"{where}: {len(manifest['layers'])} layers but {len(diff_ids)} diff_ids"
                )
        else:
            self.verify_blob(config, f"{where}: config")
        for i, layer in enumerate(manifest["layers"]):
            self.verify_blob(layer, f"{where}: layers[{i}]")

    def read_document(self, desc: dict[str, Any], where: str) -> bytes:
        """Verify a JSON blob, validate it against its media type and return its bytes."""
        self.verify_blob(desc, where)
        data = _read_file(self.blob_path(desc["digest"], where))
        try:
            validate(data, desc["mediaType"])
        except ImageError as exc:
            raise ImageError(f"{where}: {exc.message}") from None
        return data

    def verify_blob(self, desc: dict[str, Any], where: str) -> None:
        """The blob exists and has the descriptor's size and digest (embedded data too)."""
        digest, size = desc["digest"], desc["size"]
        if "data" in desc:
            _verify_bytes(base64.b64decode(desc["data"]), digest, size, f"{where}: data")
        if digest in self.verified:
            return
        path = self.blob_path(digest, where)
        if not path.is_file():
            if desc.get("urls"):  # non-distributable content may live elsewhere
                return
            raise ImageError(f"{where}: blob {digest} is missing ({path})")
        if path.stat().st_size != size:
            raise ImageError(f"{where}: blob {digest} has {path.stat().st_size} bytes, not {size}")
        actual = _hash_file(path, digest.partition(":")[0])
        if actual != digest:
            raise DigestMismatchError(f"{where}: blob {path.name} hashes to {actual}, not {digest}")
        self.verified.add(digest)

    def blob_path(self, digest: str, where: str) -> Path:
        """blobs/<algorithm>/<encoded>, for an algorithm this validator can compute."""
        algorithm, _, encoded = digest.partition(":")
        if algorithm not in _REGISTERED_HEX_LENGTHS or _HEX.fullmatch(encoded) is None:
            raise ImageError(f"{where}: cannot verify digest {digest!r}")
        return self.root / "blobs" / algorithm / encoded


def _hash_file(path: Path, algorithm: str) -> str:
    """Digest a file in 1 MiB chunks."""
    hasher = hashlib.new(algorithm)
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            hasher.update(chunk)
    return f"{algorithm}:{hasher.hexdigest()}"


def _verify_bytes(data: bytes, digest: str, size: int, where: str) -> None:
    """Embedded bytes must match their descriptor's size and digest."""
    algorithm = digest.partition(":")[0]
    if algorithm not in _REGISTERED_HEX_LENGTHS:
        raise ImageError(f"{where}: cannot verify digest {digest!r}")
    actual = f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
    if len(data) != size or actual != digest:
        raise DigestMismatchError(f"{where}: embedded data does not match size/digest")
