"""What distill reads from a registry's responses besides their content: small bodies
read with a cap and a deadline, Retry-After, the error a registry explains itself with,
and what a transport failure (DNS, TLS, a certificate, a reset) means for the user."""

from __future__ import annotations

import email.utils
import json
import socket
import ssl
import time

import httpx

from distill.errors import RegistryError

#: Bodies read whole (errors, tokens) are cut at this size.
MAX_SMALL_BODY = 1 << 20
#: A body read whole must arrive within this many seconds.
BODY_DEADLINE = 120.0
#: Retry-After is honoured up to this many seconds.
MAX_RETRY_AFTER = 60.0


def read_capped(response: httpx.Response, limit: int = MAX_SMALL_BODY,
                deadline: float | None = None) -> bytes:
    """Read a body whole as sent: at most ``limit`` bytes, within ``deadline`` seconds
    (default BODY_DEADLINE: a server trickling bytes cannot hold a read forever), not
    content-encoded."""
    if deadline is None:
        deadline = BODY_DEADLINE      # looked up now, not when this function was defined
    if not response.is_stream_consumed:
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            response.close()
            raise RegistryError(f"{response.request.url.host}: a response was sent "
                                f"{encoding[:40]}-encoded, which was not asked for")
        data = bytearray()
        ends = time.monotonic() + deadline
        for chunk in response.iter_raw():
            data += chunk
            if len(data) > limit:
                response.close()
                raise RegistryError(f"{response.request.url.host}: a response to "
                                    f"{response.request.method} {response.request.url.path} "
                                    f"is larger than {limit} bytes")
            if time.monotonic() > ends:
                response.close()
                raise RegistryError(f"{response.request.url.host}: a response to "
                                    f"{response.request.method} {response.request.url.path} "
                                    f"took more than {deadline:.0f} s")
        response._content = bytes(data)
    return response.content


def retry_after(response: httpx.Response) -> float | None:
    """Seconds a 429/503 asks the client to wait (a number or an HTTP date), capped."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, min(when.timestamp() - time.time(), MAX_RETRY_AFTER))


def error_detail(response: httpx.Response) -> str:
    """The first error a registry's JSON body names (``MANIFEST_UNKNOWN: …``)."""
    try:
        doc = json.loads(response.content)
        first = doc["errors"][0]
        code, message = str(first.get("code", "")), str(first.get("message", ""))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, RecursionError,
            httpx.ResponseNotRead):
        return ""
    text = ": ".join(p for p in (code, message) if p)
    return "".join(c if c.isprintable() else "?" for c in text)[:200]


def caused_by(e: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``e`` or anything in its chain of causes is a ``kind``."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def is_unknown_host(e: BaseException) -> bool:
    """A name that does not resolve (or no DNS at all): trying again will not help."""
    return caused_by(e, socket.gaierror)


def is_tls_failure(e: BaseException) -> bool:
    """A TLS handshake that failed (a certificate, a plain-HTTP server): not transient."""
    return caused_by(e, ssl.SSLError)


def is_certificate_failure(e: BaseException) -> bool:
    return caused_by(e, ssl.SSLCertVerificationError)


def transport_reason(e: BaseException) -> str:
    cause: BaseException = e
    while cause.__cause__ is not None or cause.__context__ is not None:
        cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
    text = str(cause) or str(e) or type(e).__name__
    return text.splitlines()[0][:200]


def transport_hint(e: httpx.TransportError, host: str) -> str | None:
    text = transport_reason(e).lower()
    if "certificate" in text:
        return (f"trust the registry's CA with ca = [\"…\"] under [registry.\"{host}\"] in "
                "the registry settings (distill's registries.toml)")
    if "wrong version number" in text or "record layer" in text:
        return f"{host} may speak plain HTTP: set http = true under [registry.\"{host}\"]"
    return None
