"""One registry endpoint over the distribution API: scheme, TLS, auth and retries.

Auth follows the registry token flow Docker uses: ``GET /v2/`` answers 401 with a
``WWW-Authenticate`` challenge; ``Basic`` means credentials go with every request;
``Bearer realm=…,service=…`` means a token is fetched from the realm for each set of
scopes (``repository:NAME:pull,push``) and reused for that set. A registry may answer
a request with a new challenge naming the scope it wants; the token is fetched again
once for it.

Everything a registry sends is hostile: bodies that are read whole are capped, redirects
are followed only for blob downloads (with credentials dropped on a change of origin, as
httpx does), and credentials never go to a realm over plain HTTP unless the registry
itself is a loopback or user-marked plain-HTTP one.
"""

from __future__ import annotations

import json
import random
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import urlsplit

import httpx

from distill import __version__
from distill.errors import RegistryError
from distill.registry.auth_config import Credentials, credentials_for
from distill.registry.hosts import HostSettings
from distill.registry.responses import (
    MAX_SMALL_BODY,
    error_detail,
    is_certificate_failure,
    is_tls_failure,
    is_unknown_host,
    read_capped,
    retry_after,
    transport_hint,
    transport_reason,
)

USER_AGENT = f"distill/{__version__}"
#: Statuses worth another try, as Docker and containerd retry them.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: Docker Hub's API lives on another host than its name.
API_HOSTS = {"docker.io": "registry-1.docker.io"}

_PARAM = re.compile(r'\s*([a-zA-Z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


@dataclass(frozen=True)
class Challenge:
    scheme: str                    # "basic" or "bearer" (lower case)
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge | None:
    """``Bearer realm="…",service="…",scope="…"`` -> Challenge; None if unreadable."""
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if m is None or m.end() == pos:
            break
        value = m.group(2) if m.group(2) is not None else m.group(3)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
        pos = m.end()
    return Challenge(scheme.lower(), params)


@dataclass(frozen=True)
class Retry:
    attempts: int = 6            # tries in all
    base_delay: float = 0.25     # doubles each time, with jitter
    max_delay: float = 8.0

    def delay(self, attempt: int) -> float:
        return float(min(self.max_delay, self.base_delay * 2 ** attempt)) * random.uniform(0.5, 1.0)


class Budget:
    """The tries one request may make, shared by every retry on its way (a status worth
    another try, a re-authentication, a blob download resumed after a drop), so that
    nested retries add up instead of multiplying."""

    def __init__(self, tries: int) -> None:
        self.left = tries


class RegistryClient:
    """Requests to one registry host, authenticated per repository scope."""

    def __init__(self, settings: HostSettings, *,
                 credentials: Callable[[str], Credentials | None] = credentials_for,
                 retry: Retry = Retry(), timeout: float = 60.0) -> None:
        self.settings = settings
        self.host = settings.host
        self.api_host = API_HOSTS.get(settings.host, settings.host)
        self._credentials = credentials
        self._creds_loaded = False
        self._creds: Credentials | None = None
        self.retry = retry
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 15.0))
        self._scheme: str | None = None
        self._challenge: Challenge | None = None
        self._tokens: dict[tuple[str, ...], str] = {}
        self._token_lock = threading.Lock()
        self._client = self._make_client(verify=not settings.insecure)

    def _make_client(self, verify: bool) -> httpx.Client:
        context: ssl.SSLContext | bool = False
        if verify:
            context = ssl.create_default_context()
            for ca in self.settings.ca:
                try:
                    context.load_verify_locations(cafile=str(ca))
                except (OSError, ssl.SSLError) as e:
                    raise RegistryError(f"cannot read CA certificate {ca} for {self.host}: "
                                        f"{e}") from None
        return httpx.Client(verify=context, timeout=self._timeout, follow_redirects=False,
                            # bodies as sent: a compressed answer could inflate without
                            # bound before any cap saw it
                            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- credentials and scheme ----------------------------------------------------------
    @property
    def credentials(self) -> Credentials | None:
        if not self._creds_loaded:
            self._creds = self._credentials(self.host)
            self._creds_loaded = True
        return self._creds

    @property
    def base_url(self) -> str:
        if self._scheme is None:
            self._ping()
        return f"{self._scheme}://{self.api_host}"

    def _ping(self) -> None:
        """Find the scheme (HTTPS, or plain HTTP where allowed) and the auth challenge."""
        if self.settings.http:
            schemes = ["http"]
        elif self.settings.loopback:
            schemes = ["https", "http"]   # as Docker treats 127.0.0.0/8: try TLS first
        else:
            schemes = ["https"]
        last: Exception | None = None
        retries_spent = False
        for scheme in schemes:
            url = f"{scheme}://{self.api_host}/v2/"
            try:
                response = self._send_retrying(
                    lambda url=url: self._client.build_request("GET", url),  # type: ignore[misc]
                    what="contact the registry", attempts=1 if retries_spent else None)
            except RegistryError as e:
                last = e
                # plain HTTP only when the server does not speak TLS at all; a certificate
                # that does not verify is an error, never a reason to drop TLS
                if scheme != schemes[-1] and isinstance(e.__cause__, httpx.ConnectError) \
                        and not is_certificate_failure(e.__cause__):
                    # a connection refused all through the retries: plain HTTP is tried
                    # once, not for a second round (a registry that is down says so in
                    # one round); a TLS handshake that failed was not retried
                    retries_spent = not is_tls_failure(e.__cause__)
                    continue
                raise
            self._scheme = scheme
            if response.status_code == 401:
                header = response.headers.get("www-authenticate", "")
                self._challenge = parse_challenge(header)
            elif response.status_code >= 400 and response.status_code != 404:
                raise self.error(response, "contact the registry")
            return
        raise last or RegistryError(f"{self.host}: cannot connect")

    def check_login(self) -> None:
        """Prove the credentials work, as ``docker login`` does before it stores them."""
        self._scheme = None
        self._ping()
        challenge = self._challenge
        if challenge is None:
            return                      # the registry asks for no credentials
        if challenge.scheme == "bearer":
            self._fetch_token(challenge, ())
            return
        response = self.request("GET", "/v2/", scopes=(), what="log in")
        if response.status_code != 200:
            raise self.error(response, "log in")

    # -- requests --------------------------------------------------------------------------
    def request(self, method: str, path: str, *, scopes: tuple[str, ...],
                headers: dict[str, str] | None = None,
                content: bytes | Callable[[], Any] | None = None,
                params: dict[str, str] | None = None, what: str,
                limit: int = MAX_SMALL_BODY) -> httpx.Response:
        """A request whose body is read whole (at most ``limit`` bytes); retried on
        transient failures, a read whose body breaks off included (reads only: a write
        may have been done)."""
        with self.stream(method, path, scopes=scopes, headers=headers, content=content,
                         params=params, what=what, read_limit=limit) as response:
            return response

    @contextmanager
    def stream(self, method: str, path: str, *, scopes: tuple[str, ...],
               headers: dict[str, str] | None = None,
               content: bytes | Callable[[], Any] | None = None,
               params: dict[str, str] | None = None, what: str,
               follow: bool = False, read_limit: int | None = None,
               budget: Budget | None = None) -> Iterator[httpx.Response]:
        """A response whose body is read by the caller. ``path`` is under the API root or
        an absolute URL the registry gave (an upload location). ``content`` may be a
        function giving a fresh body for each try. ``follow`` follows redirects (blob
        downloads go to storage elsewhere). ``budget`` is shared with the caller's own
        retries (default: one Retry.attempts for this call)."""
        url = path if "://" in path else self.base_url + path
        if not self.same_origin(url):
            raise RegistryError(f"{self.host}: refusing to send a request to {url[:200]}, "
                                "which is not this registry")
        retried_auth = False
        budget = budget if budget is not None else Budget(self.retry.attempts)
        while True:
            def build() -> httpx.Request:
                body = content() if callable(content) else content
                req = self._client.build_request(method, url, headers=dict(headers or {}),
                                                 content=body, params=params)
                self._authorize(req, scopes)
                return req

            response = self._send_retrying(build, what=what, follow=follow,
                                           read_limit=read_limit, budget=budget,
                                           idempotent=method in ("GET", "HEAD"))
            if response.status_code == 401 and not retried_auth and self._reauthorize(
                    response, scopes):
                response.close()
                retried_auth = True
                continue
            try:
                yield response
            finally:
                response.close()
            return

    def _send_retrying(self, build: Callable[[], httpx.Request], *, what: str,
                       read_limit: int | None = MAX_SMALL_BODY, follow: bool = False,
                       attempts: int | None = None, idempotent: bool = True,
                       budget: Budget | None = None) -> httpx.Response:
        """Send, retrying connection failures and the statuses worth another try, within
        one budget of attempts; with ``read_limit``, the body is read (capped) as part of
        the try. Anything a hostile server can make go wrong is a RegistryError."""
        if budget is None:
            budget = Budget(self.retry.attempts if attempts is None else attempts)
        attempt = 0
        while True:
            budget.left -= 1
            try:
                request = build()
                response = self._client.send(request, stream=True, follow_redirects=follow)
            except httpx.TransportError as e:
                if budget.left <= 0 or is_tls_failure(e) or is_unknown_host(e):
                    raise RegistryError(
                        f"{self.host}: cannot {what}: {transport_reason(e)}",
                        hint=transport_hint(e, self.host)) from e
                time.sleep(self.retry.delay(attempt))
                attempt += 1
                continue
            except (httpx.HTTPError, httpx.InvalidURL, ValueError, UnicodeError) as e:
                raise RegistryError(f"{self.host}: cannot {what}: {transport_reason(e)}") \
                    from None
            if response.status_code in RETRY_STATUSES and budget.left > 0:
                wait = retry_after(response) if response.status_code in (429, 503) else None
                response.close()
                time.sleep(wait if wait is not None else self.retry.delay(attempt))
                attempt += 1
                continue
            if read_limit is None:
                return response
            try:
                read_capped(response, read_limit)
                return response
            except httpx.TransportError as e:
                # the connection broke after the status line: a read is asked again
                if not idempotent or budget.left <= 0:
                    raise RegistryError(f"{self.host}: cannot {what}: "
                                        f"{transport_reason(e)}") from e
                time.sleep(self.retry.delay(attempt))
                attempt += 1

    def same_origin(self, url: str) -> bool:
        """Whether ``url`` is this registry's (scheme, host and port): only there do its
        credentials and our uploads go."""
        try:
            target = httpx.URL(url)
            base = httpx.URL(self.base_url)
        except (httpx.InvalidURL, ValueError, UnicodeError):
            return False
        return (target.scheme, target.host, target.port) == (base.scheme, base.host, base.port)

    # -- auth ------------------------------------------------------------------------------
    def _authorize(self, request: httpx.Request, scopes: tuple[str, ...]) -> None:
        challenge = self._challenge
        if challenge is None:
            return
        if challenge.scheme == "basic":
            creds = self.credentials
            if creds is not None and creds.username and not creds.identity_token:
                request.headers["Authorization"] = httpx.BasicAuth(
                    creds.username, creds.password)._auth_header
        elif challenge.scheme == "bearer":
            key = tuple(sorted(scopes))
            with self._token_lock:    # parallel transfers share one token per scope
                token = self._tokens.get(key)
                if token is None:
                    token = self._fetch_token(challenge, key)
                    self._tokens[key] = token
            if token:
                request.headers["Authorization"] = f"Bearer {token}"

    def _reauthorize(self, response: httpx.Response, scopes: tuple[str, ...]) -> bool:
        """A 401 to an authorised request: adopt its challenge (a wider scope, a fresh
        token) and try once more. False when nothing would change."""
        challenge = parse_challenge(response.headers.get("www-authenticate", ""))
        if challenge is None:
            return False
        key = tuple(sorted(scopes))
        if challenge.scheme == "bearer":
            if "scope" in challenge.params:
                key = tuple(sorted({*key, *challenge.params["scope"].split(" ")}))
            self._challenge = Challenge("bearer", {**challenge.params,
                                                   "scope": " ".join(key)})
            self._tokens.pop(tuple(sorted(scopes)), None)
            token = self._fetch_token(self._challenge, key)
            self._tokens[tuple(sorted(scopes))] = token
            return bool(token)
        if challenge.scheme == "basic" and self._challenge is None:
            # a registry that let us in anonymously now asks for a login; one that
            # asked for tokens may not switch to being sent the password itself
            self._challenge = challenge
            return self.credentials is not None
        return False

    def _fetch_token(self, challenge: Challenge, scopes: tuple[str, ...]) -> str:
        realm = challenge.params.get("realm", "")
        try:
            parts = urlsplit(realm)
            httpx.URL(realm)
        except (ValueError, UnicodeError, httpx.InvalidURL):
            parts = urlsplit("")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise RegistryError(f"{self.host}: the registry named an unusable token realm "
                                f"{realm[:200]!r}")
        plain_ok = self._scheme == "http" or self.settings.http
        creds = self.credentials
        if parts.scheme == "http" and not plain_ok:
            creds = None   # never send a password in clear text to a realm an HTTPS
                           # registry named; ask anonymously
        service = challenge.params.get("service", "")
        if creds is not None and creds.identity_token:
            form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token,
                    "client_id": "distill", "scope": " ".join(scopes)}
            if service:
                form["service"] = service
            response = self._send_retrying(
                lambda: self._client.build_request("POST", realm, data=form),
                what="get an access token")
        else:
            params: list[tuple[str, str | int | float | bool | None]] = [
                ("scope", s) for s in scopes]
            if service:
                params.insert(0, ("service", service))
            auth = None
            if creds is not None and creds.username:
                auth = httpx.BasicAuth(creds.username, creds.password)._auth_header
            headers = {"Authorization": auth} if auth else {}
            response = self._send_retrying(
                lambda: self._client.build_request("GET", realm, params=params,
                                                   headers=headers),
                what="get an access token")
        if response.status_code in (401, 403):
            raise RegistryError(
                f"{self.host}: the token service refused "
                f"{'the credentials' if creds else 'anonymous access'} "
                f"(HTTP {response.status_code})",
                hint=f"log in with 'distill login {self.host}'" if creds is None
                else f"check the credentials stored for {self.host} ('distill login')")
        if response.status_code != 200:
            raise self.error(response, "get an access token")
        try:
            doc = json.loads(response.content)
        except (ValueError, RecursionError):
            doc = None
        token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str):
            raise RegistryError(f"{self.host}: the token service sent no token")
        return token

    # -- errors ----------------------------------------------------------------------------
    def error(self, response: httpx.Response, what: str, repository: str = "") -> RegistryError:
        """A one-line error naming the registry, repository and status, with what to do."""
        status = response.status_code
        where = f"{self.host}/{repository}" if repository else self.host
        detail = error_detail(response)
        message = f"{where}: cannot {what}: HTTP {status}" + (f" ({detail})" if detail else "")
        hint = {
            401: f"check the username and password ('distill login {self.host}')"
                 if self.credentials is not None else f"log in with 'distill login {self.host}'",
            403: f"the credentials for {self.host} are not allowed to do this; check "
                 "the repository name and your access",
            404: "check the repository name and tag",
            429: "the registry is rate-limiting; wait and try again, or log in",
        }.get(status)
        if 500 <= status < 600:
            hint = "the registry failed; try again later"
        return RegistryError(message, hint=hint)
