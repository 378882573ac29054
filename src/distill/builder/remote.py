"""What identifies an ADD source outside the context (a git repository, a URL) without
fetching it, so that a step whose result is cached fetches nothing:

* git: the commit its ref names now (``git ls-remote``); the checkout is made only when
  the step runs, and must be that commit;
* a URL with ``--checksum``: the checksum (no request at all, as in BuildKit);
* another URL: the sha256 of its content, known from an earlier download when the server
  answers a conditional GET (its ETag and Last-Modified) with 304 Not Modified. The
  validators only say when to trust that digest; the key is always content.

Anything else (an abbreviated commit, a server without validators, one that answers
200) is fetched before the key, and keyed on what was fetched. What a server said is
kept in ``STORE/url-validators/<sha256 of the URL>``: distill's own files, only ever read
as JSON of the expected shape.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from distill import owned
from distill.builder import add as addsrc


class UrlRecords:
    """The validators and content digest of each URL ADD downloaded, in the store."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, url: str) -> Path:
        return self.directory / hashlib.sha256(url.encode("utf-8", "surrogateescape")) \
            .hexdigest()

    def get(self, url: str) -> addsrc.UrlValidators | None:
        try:
            value = json.loads(self._path(url).read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(value, dict) or value.get("url") != url:
            return None
        sha256, etag, modified = (value.get(k) for k in ("sha256", "etag", "last_modified"))
        if not (isinstance(sha256, str) and len(sha256) == 64 and
                all(isinstance(v, (str, type(None))) for v in (etag, modified))):
            return None
        return addsrc.UrlValidators(sha256, etag, modified)

    def put(self, url: str, seen: addsrc.UrlValidators) -> None:
        if not (seen.etag or seen.last_modified):
            return                                  # nothing to ask with next time
        path = self._path(url)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            self.directory.mkdir(mode=0o700, exist_ok=True)
            tmp.write_text(json.dumps({"url": url, "sha256": seen.sha256, "etag": seen.etag,
                                       "last_modified": seen.last_modified}))
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)             # only a hint: the next build downloads


def identify(pattern: str, opts: addsrc.AddOptions, records: UrlRecords) -> dict[str, str] | None:
    """What names the content of a git or URL source without fetching it, or None."""
    if addsrc.is_git(pattern):
        with owned.temp_dir("distill-ls-remote-") as scratch:
            commit = addsrc.git_commit(pattern, scratch, opts)
        return None if commit is None else {"git_commit": commit}
    addsrc.url_filename(pattern)          # a URL that names no file fails before a request
    if opts.checksum:
        return {"checksum": opts.checksum}
    seen = records.get(pattern)
    if seen is not None and addsrc.unchanged_since(pattern, seen, opts):
        return {"sha256": seen.sha256, "last_modified": seen.last_modified or ""}
    return None
