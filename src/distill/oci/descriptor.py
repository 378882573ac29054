"""Content descriptors, manifests and indexes as plain JSON-ready values."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from distill.errors import ImageError
from distill.oci.digest import Digest
from distill.oci.platform import Platform


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    platform: Platform | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.platform is not None:
            d["platform"] = self.platform.to_dict()
        if self.annotations:
            d["annotations"] = dict(sorted(self.annotations.items()))
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Descriptor:
        try:
            if not isinstance(d, dict):
                raise TypeError("not an object")
            plat = d.get("platform")
            annotations = dict(d.get("annotations") or {})
            if not all(isinstance(k, str) and isinstance(v, str)
                       for k, v in annotations.items()):
                raise TypeError("annotations must map strings to strings")
            return cls(
                media_type=str(d["mediaType"]),
                digest=Digest(d["digest"]),
                size=int(d["size"]),
                annotations=annotations,
                platform=Platform.from_dict(plat) if plat else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ImageError(f"malformed descriptor {str(d)[:200]}: {e}") from None


def canonical_json(value: Any) -> bytes:
    """Stable JSON bytes for digests: sorted keys, no spaces. A lone surrogate (bytes
    that were not UTF-8, from a --build-arg, or a "\\udcff" escape in a base image's
    JSON) is written as U+FFFD, as Go's encoding/json writes invalid UTF-8."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return _SURROGATE.sub("\ufffd", text).encode()


_SURROGATE = re.compile("[\ud800-\udfff]")


def load_json(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ImageError(f"{what} is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise ImageError(f"{what} is not a JSON object")
    return value
