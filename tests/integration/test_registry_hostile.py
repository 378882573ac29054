"""Regression tests for the registry review (round 1): each finding of the hostile-registry
probes, replayed against an ``EvilRegistry`` on 127.0.0.1 (tests/helpers/evil_registry.py).

1. credentials and uploads go only to the registry's own origin (scheme, host, port): an
   upload ``Location`` on another scheme or port gets nothing; a token registry cannot
   switch to being sent the password;
2. a content-encoded answer (a zstd decompression bomb, a gzip body that is not gzip) is
   refused, never inflated; every request asks for ``Accept-Encoding: identity``;
3. ``--cache-to type=local,dest=DIR`` never writes or deletes outside DIR, whatever
   ``DIR/blobs`` is (or is swapped for, mid-export);
4. ``--cache-from type=registry,ref=REPO@sha256:D`` uses only a cache that hashes to D;
5. hostile answers (endless redirects, ``Retry-After: ²``, deeply nested JSON, broken
   realms, upload Locations, chunk minimums and host names) are ``error:`` lines, never
   tracebacks;
6. one retry budget per request (a 503 storm costs ``Retry.attempts`` requests, not its
   square), a body read whole has a deadline, and a blob that trickles is dropped (the
   last two in-process, with the limits made small, against a real trickling server).

Each CLI test checks the exit code, one ``error:`` line and no traceback, that nothing
outside the places distill was told to write changed, that credentials reached only the
registry they belong to, and that every blob in the store hashes to its name.

The CLI runs are many and each is mostly interpreter start-up, so those that do not depend
on one another run side by side: a module fixture starts one batch (each run with its own
server, store and settings) and the tests check one run each.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import zstandard

from distill.builder import cache_exchange
from distill.errors import RegistryError
from distill.oci.descriptor import Descriptor
from distill.oci.digest import Digest
from distill.oci.platform import Platform
from distill.oci.reference import normalize_reference
from distill.registry import pull as pull_module
from distill.registry import responses
from distill.registry.auth_config import Credentials
from distill.registry.client import Retry
from distill.registry.hosts import RegistryHosts
from distill.store.store import Store
from tests.conftest import DISTILL, RunDistill
from tests.helpers.evil_registry import (
    EvilHandler,
    EvilRegistry,
    Hook,
    Seen,
    TinyImage,
    basic,
    docker_config,
)
from tests.helpers.registry import OCI_LAYER_GZIP, OCI_MANIFEST, TlsFiles, make_tls

pytestmark = pytest.mark.integration

USER, PASSWORD = "victim", "victim-password-7c1e"
ATTEMPTS = Retry().attempts
DEEP_JSON = b"[" * 200_000 + b"]" * 200_000
SUPERSCRIPT_TWO = "\u00b2".encode().decode("latin-1")   # sent as the UTF-8 bytes of '²'


# -- helpers ---------------------------------------------------------------------------------

def _env(tmp: Path, registries_toml: str = "",
         logins: dict[str, tuple[str, str]] | None = None) -> dict[str, str]:
    """Registry settings and credentials of this run only."""
    conf = tmp / "registries.toml"
    conf.write_text(registries_toml)
    config = docker_config(tmp / "docker-config", logins or {})
    return {"DISTILL_REGISTRIES": str(conf), "DOCKER_CONFIG": str(config)}


def assert_clean_failure(proc: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """The exit code, exactly one 'error:' line and no traceback; the error line."""
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def assert_store_verified(root: Path) -> None:
    """Every blob in the store hashes to its name; no download left behind."""
    blobs = root / "blobs" / "sha256"
    for path in blobs.iterdir() if blobs.is_dir() else ():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name, path
    tmp = root / "tmp"
    leftovers = [p for p in tmp.rglob("*") if not p.is_dir()] if tmp.is_dir() else []
    assert leftovers == [], leftovers


def snapshot(directory: Path) -> dict[str, Any]:
    """What is under ``directory``: files with their bytes, symlinks with their targets."""
    out: dict[str, Any] = {}
    for path in sorted(directory.rglob("*")):
        rel = str(path.relative_to(directory))
        if path.is_symlink():
            out[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            out[rel] = ("dir",)
        else:
            out[rel] = ("file", path.read_bytes())
    return out


def _outside(tmp: Path) -> Path:
    """A canary directory: a victim's files (a store-like sha256/ of 64-hex names, an empty
    directory, a file) distill must never touch."""
    outside = tmp / "outside"
    (outside / "sha256").mkdir(parents=True)
    (outside / "empty").mkdir()
    for i in range(3):
        data = f"victim blob {i}\n".encode()
        (outside / "sha256" / hashlib.sha256(data).hexdigest()).write_bytes(data)
    (outside / "victim.txt").write_text("victim file\n")
    return outside


@dataclass
class Ran:
    """One finished CLI run of a batch."""
    proc: subprocess.CompletedProcess[str]
    peak_kib: int                   # its peak resident memory


# Runs distill as a child of a small process and records distill's own peak memory:
# a direct child of pytest would inherit pytest's (by then large) memory high-water mark,
# which the kernel counts in the child's ru_maxrss when it execs.
_MEASURED = """
import os, sys
out, argv = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    os.execv(argv[0], argv)
_, status, usage = os.wait4(pid, 0)
with open(out, "w") as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_batch(jobs: dict[str, tuple[list[str], dict[str, str]]], logs: Path,
              timeout: float = 300) -> dict[str, Ran]:
    """Run ``distill ARGV`` with each job's environment, all at once; wait for every one.
    A run still going after ``timeout`` seconds is killed (and fails its test)."""
    started = {}
    for name, (argv, env) in jobs.items():
        with open(logs / f"{name}.stdout", "wb") as out, \
                open(logs / f"{name}.stderr", "wb") as err:
            started[name] = subprocess.Popen(
                [sys.executable, "-c", _MEASURED, str(logs / f"{name}.maxrss"), DISTILL, *argv],
                env={**os.environ, **env}, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                start_new_session=True)

    def kill_all() -> None:
        for popen in started.values():
            if popen.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(popen.pid, signal.SIGKILL)     # the launcher and distill

    watchdog = threading.Timer(timeout, kill_all)
    watchdog.start()
    try:
        results = {}
        for name, popen in started.items():
            popen.wait()
            proc = subprocess.CompletedProcess(
                popen.args[4:], popen.returncode,
                (logs / f"{name}.stdout").read_text(errors="replace"),
                (logs / f"{name}.stderr").read_text(errors="replace"))
            maxrss = logs / f"{name}.maxrss"
            # no record (killed): no claim that it stayed small
            results[name] = Ran(proc, int(maxrss.read_text()) if maxrss.exists()
                                else sys.maxsize)
        return results
    finally:
        watchdog.cancel()


@dataclass
class Outcome:
    """A batch run against its own EvilRegistry: what the CLI did, what the server saw."""
    proc: subprocess.CompletedProcess[str]
    peak_kib: int
    requests: list[Seen]
    root: Path
    host: str

    def api_requests(self) -> list[Seen]:
        return [r for r in self.requests if r.route.startswith("/v2/")]


@dataclass
class Scenario:
    """A registry's answers (``hook``) and the distill command run against it (``argv``,
    given the registry and a directory of the run's own)."""
    hook: Hook | None
    argv: Callable[[EvilRegistry, Path], list[str]] = lambda registry, tmp: [
        "pull", registry.ref()]
    logins: bool = False            # the user's password for this registry in DOCKER_CONFIG
    image: TinyImage = field(default_factory=TinyImage)


def run_scenarios(scenarios: dict[str, Scenario], base: Path) -> dict[str, Outcome]:
    """Each scenario against a registry of its own, all at once."""
    registries, jobs = {}, {}
    try:
        for name, scenario in scenarios.items():
            tmp = base / name
            tmp.mkdir()
            registry = registries[name] = EvilRegistry(scenario.hook, image=scenario.image)
            registry.start()
            env = _env(tmp, logins={registry.host: (USER, PASSWORD)} if scenario.logins
                       else None)
            jobs[name] = (scenario.argv(registry, tmp),
                          {**env, "DISTILL_ROOT": str(tmp / "store")})
        ran = run_batch(jobs, base)
    finally:
        for registry in registries.values():
            registry.stop()
    return {name: Outcome(ran[name].proc, ran[name].peak_kib, registries[name].requests,
                          base / name / "store", registries[name].host) for name in scenarios}


def _pull_in_process(registry: EvilRegistry, root: Path, attempts: int = 3,
                     settings: Path | None = None, password: bool = False) -> None:
    """``distill pull`` as a library call, with quick retries (ms apart), the registry
    settings file ``settings`` and (with ``password``) the user's password."""
    registries = pull_module.Registries(
        RegistryHosts.load(settings) if settings else RegistryHosts(),
        credentials=lambda host: Credentials(USER, PASSWORD) if password else None)
    try:
        registries.client(registry.host).retry = Retry(attempts=attempts, base_delay=0.01,
                                                       max_delay=0.02)
        pull_module.pull(Store(root), registries, normalize_reference(registry.ref()),
                         Platform.parse("linux/amd64"))
    finally:
        registries.close()


# -- the hostile registries of the pull batch ---------------------------------------------------

def _token_then_basic(h: EvilHandler) -> bool:
    """Tokens at first; a request made with one is asked for Basic credentials."""
    if h.route == "/token":
        return h.reply(200, b'{"token": "a-pull-token"}')
    auth = h.headers.get("Authorization", "")
    if h.route == "/v2/" and not auth:
        return h.reply(401, b"{}", {"WWW-Authenticate":
                                    f'Bearer realm="{h.registry.url}/token",service="x"'})
    if auth.startswith("Bearer") and "/manifests/" in h.route:
        return h.reply(401, b"{}", {"WWW-Authenticate": 'Basic realm="evil"'})
    return False


def _zstd_bomb() -> bytes:
    """32 KiB of zstd that inflates to 1 GiB."""
    compressor = zstandard.ZstdCompressor(level=1).compressobj()
    zeros = bytes(1 << 20)
    return b"".join([*(compressor.compress(zeros) for _ in range(1024)), compressor.flush()])


def _encoded_ping(body: bytes) -> Hook:
    return lambda h: h.route == "/v2/" and h.reply(200, body, {"Content-Encoding": "zstd"})


def _gzip_manifest_not_gzip(h: EvilHandler) -> bool:
    return "/manifests/" in h.route and h.reply(
        200, b"not gzip at all", {"Content-Encoding": "gzip"}, OCI_MANIFEST)


def _endless_redirect(h: EvilHandler) -> bool:
    return "/blobs/" in h.route and h.reply(302, b"", {"Location": h.route + "x"})


def _deep_json_error(h: EvilHandler) -> bool:
    return "/manifests/" in h.route and h.reply(400, DEEP_JSON)


def _token_flow(token_body: bytes, realm: str | None = None) -> Hook:
    def hook(h: EvilHandler) -> bool:
        if h.route == "/token":
            return h.reply(200, token_body)
        if h.headers.get("Authorization", "").startswith("Bearer"):
            return False
        return h.reply(401, b"{}", {"WWW-Authenticate":
                                    f'Bearer realm="{realm or h.registry.url + "/token"}",'
                                    'service="x"'})
    return hook


def _retry_after_superscript_once(h: EvilHandler) -> bool:
    if h.route == "/v2/" and [r.route for r in h.registry.requests].count("/v2/") == 1:
        return h.reply(503, b"", {"Retry-After": SUPERSCRIPT_TWO})
    return False


def _storm(h: EvilHandler) -> bool:
    """Five 503s (Retry-After: 0), then a body that breaks off, over and over."""
    if "/manifests/" not in h.route:
        return False
    if h.registry.count("GET", "/manifests/") % ATTEMPTS:
        return h.reply(503, b"", {"Retry-After": "0"})
    return h.cut(1000, b"{" * 10)


def _from(host: str) -> Callable[[EvilRegistry, Path], list[str]]:
    def argv(registry: EvilRegistry, tmp: Path) -> list[str]:
        ctx = tmp / "ctx"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(f"FROM {host}/x\n")
        return ["build", str(ctx)]
    return argv


HOSTILE_PULLS = {             # name: (hook, what the error line says)
    "endless-redirect": (_endless_redirect, "redirect"),
    "deep-json-error-body": (_deep_json_error, "http 400"),
    "deep-json-token": (_token_flow(DEEP_JSON), "token"),
    "realm-unparseable": (_token_flow(b"{}", realm="http://[zz/token"), "realm"),
}
BAD_HOSTS = ["999.999.999.999:5000", "[fffff::1]", "xn--zz.com"]


@pytest.fixture(scope="module")
def pulls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Every pull-like scenario of this file, run side by side."""
    scenarios = {
        "token-then-basic": Scenario(_token_then_basic, logins=True),
        "zstd-bomb": Scenario(_encoded_ping(_zstd_bomb())),
        "gzip-manifest-not-gzip": Scenario(_gzip_manifest_not_gzip),
        "retry-after-superscript": Scenario(_retry_after_superscript_once),
        "503-storm": Scenario(_storm),
        **{name: Scenario(hook) for name, (hook, _) in HOSTILE_PULLS.items()},
        **{f"from-{host}": Scenario(None, argv=_from(host)) for host in BAD_HOSTS},
    }
    return run_scenarios(scenarios, tmp_path_factory.mktemp("pulls"))


# -- 1. credentials and uploads stay at the registry's origin ---------------------------------

@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls(tmp_path_factory.mktemp("evil-tls"))


@dataclass
class PushOutcome:
    proc: subprocess.CompletedProcess[str]
    registry: EvilRegistry              # stopped; its requests remain
    root: Path
    collector: EvilRegistry | None = None


def _upload_location(location: str, min_chunk: str | None = None) -> Hook:
    def hook(h: EvilHandler) -> bool:
        if h.command == "POST" and h.route.endswith("/blobs/uploads/"):
            headers = {"Location": location}
            if min_chunk is not None:
                headers["OCI-Chunk-Min-Length"] = min_chunk
            return h.reply(202, b"", headers)
        return False
    return hook


def _deep_json_on_manifest_put(h: EvilHandler) -> bool:
    if h.command == "PUT" and "/manifests/" in h.route:
        h.read_body()
        return h.reply(400, DEEP_JSON)
    return False


def _push_phase(then: Hook, password: bool) -> Hook:
    """Demand the password (when ``password``) on every request; once the fixture switches
    the registry to its push phase, say no blob is there yet, and answer with ``then``."""
    def hook(h: EvilHandler) -> bool:
        if password and h.headers.get("Authorization") != basic(USER, PASSWORD):
            return h.reply(401, b"{}", {"WWW-Authenticate": 'Basic realm="evil"'})
        if h.registry.phase != "push":
            return False
        if h.command == "HEAD" and "/blobs/" in h.route:
            return h.reply(404, b"")
        return then(h)
    return hook


@pytest.fixture(scope="module")
def pushes(tls: TlsFiles, tmp_path_factory: pytest.TempPathFactory
           ) -> dict[str, PushOutcome]:
    """Each push scenario: its registry's image pulled into a store of its own (in-process:
    that is set-up), then pushed back to the registry turned hostile (the CLI, all side by
    side)."""
    base = tmp_path_factory.mktemp("pushes")
    collectors = {"http": EvilRegistry().start(), "https": EvilRegistry(tls=tls).start()}
    # name: (hook once pushing, HTTPS with Basic auth?, where the upload is sent)
    scenarios: dict[str, tuple[Hook, bool, EvilRegistry | None]] = {
        **{f"location-{scheme}-other-port": (_upload_location(
            f"{collector.url}/v2/x/y/blobs/uploads/stolen"), True, collector)
           for scheme, collector in collectors.items()},
        "location-unparseable": (_upload_location("http://[::1/upload"), False, None),
        "deep-json-on-manifest-put": (_deep_json_on_manifest_put, False, None),
        "chunk-min-superscript": (_upload_location("/v2/x/y/blobs/uploads/u1",
                                                   SUPERSCRIPT_TWO), False, None),
    }
    registries: dict[str, EvilRegistry] = {}
    try:
        jobs = {}
        for name, (then, password, _) in scenarios.items():
            tmp = base / name
            tmp.mkdir()
            registry = registries[name] = EvilRegistry(
                _push_phase(then, password), tls=tls if password else None).start()
            env = _env(tmp, f'[registry."{registry.host}"]\nca = ["{tls.ca_path}"]\n'
                       if password else "", {registry.host: (USER, PASSWORD)})
            env["DISTILL_ROOT"] = str(tmp / "store")
            _pull_in_process(registry, tmp / "store", settings=tmp / "registries.toml",
                             password=True)
            registry.phase = "push"
            jobs[name] = (["push", registry.ref()], env)
        results = run_batch(jobs, base)
    finally:
        for registry in [*registries.values(), *collectors.values()]:
            registry.stop()
    return {name: PushOutcome(results[name].proc, registries[name],
                              base / name / "store", collector)
            for name, (_, _, collector) in scenarios.items()}


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_upload_location_on_another_origin_gets_no_credentials(
        pushes: dict[str, PushOutcome], scheme: str) -> None:
    """An HTTPS registry with Basic auth answers the upload POST with a Location on the
    same host but another port (plain HTTP: the password would cross the network in the
    clear; HTTPS with a certificate the same CA signed): nothing is sent there."""
    outcome = pushes[f"location-{scheme}-other-port"]
    assert "sent the upload elsewhere" in assert_clean_failure(outcome.proc)
    assert outcome.collector is not None
    assert outcome.collector.requests == []        # not a byte, let alone the password
    # the registry itself had the password (over TLS), and no upload went to it either
    requests = outcome.registry.requests
    assert any(r.headers.get("authorization") == basic(USER, PASSWORD) for r in requests)
    assert not any(r.method in ("PUT", "PATCH") for r in requests)
    assert_store_verified(outcome.root)


def test_token_registry_cannot_switch_to_basic(pulls: dict[str, Outcome]) -> None:
    """A registry that hands out tokens answers a request made with one by asking for Basic:
    the password is not sent to the registry's API in the token's place."""
    outcome = pulls["token-then-basic"]
    assert_clean_failure(outcome.proc)
    api = outcome.api_requests()
    assert any(r.headers.get("authorization", "").startswith("Bearer") for r in api), api
    assert not any(r.headers.get("authorization", "").startswith("Basic") for r in api), api
    assert_store_verified(outcome.root)


# -- 2. content-encoded answers are refused, not inflated ----------------------------------

def test_zstd_bomb_is_refused_without_inflating(pulls: dict[str, Outcome]) -> None:
    """``GET /v2/`` answered with 32 KiB of zstd that inflates to 1 GiB: refused as sent,
    and distill's memory stays small."""
    outcome = pulls["zstd-bomb"]
    assert outcome.peak_kib < 400 << 10, f"distill peaked at {outcome.peak_kib >> 10} MiB"
    assert "zstd-encoded" in assert_clean_failure(outcome.proc)
    assert outcome.requests
    assert all(r.headers.get("accept-encoding") == "identity" for r in outcome.requests)


def test_gzip_encoded_manifest_that_is_not_gzip(pulls: dict[str, Outcome]) -> None:
    outcome = pulls["gzip-manifest-not-gzip"]
    assert "gzip-encoded" in assert_clean_failure(outcome.proc)
    assert_store_verified(outcome.root)


# -- 3. --cache-to type=local writes only inside its directory ---------------------------------

@pytest.fixture(scope="module")
def base_registry() -> Iterator[EvilRegistry]:
    """A well-behaved EvilRegistry: the base image of the build tests."""
    with EvilRegistry() as registry:
        yield registry


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory, base_registry: EvilRegistry) -> Path:
    ctx = tmp_path_factory.mktemp("ctx")
    (ctx / "f").write_text("payload\n")
    (ctx / "Dockerfile").write_text(f"FROM {base_registry.ref()}\nCOPY f /f\nCOPY f /g\n")
    return ctx


@pytest.fixture(scope="module")
def warm(distill: RunDistill, tmp_path_factory: pytest.TempPathFactory, context: Path
         ) -> tuple[Path, Path]:
    """(a store that has built ``context`` once, a local cache directory of that build)."""
    tmp = tmp_path_factory.mktemp("warm")
    cache = tmp / "cache"
    distill("build", "-q", "--cache-to", f"type=local,dest={cache},mode=max", str(context),
            root=tmp / "store", env=_env(tmp))
    return tmp / "store", cache


def _blobs_symlink_to_a_dir(dest: Path, outside: Path) -> None:
    os.symlink(outside / "empty", dest / "blobs")


def _blobs_symlink_dangling(dest: Path, outside: Path) -> None:
    os.symlink(outside / "not-yet", dest / "blobs")


def _sha256_symlink_dangling(dest: Path, outside: Path) -> None:
    (dest / "blobs").mkdir()
    os.symlink(outside / "not-yet", dest / "blobs" / "sha256")


def _blobs_is_a_file(dest: Path, outside: Path) -> None:
    (dest / "blobs").write_text("x\n")


PREPARED = {f.__name__.strip("_"): f for f in (
    _blobs_symlink_to_a_dir, _blobs_symlink_dangling, _sha256_symlink_dangling,
    _blobs_is_a_file)}


@dataclass
class CacheTo:
    proc: subprocess.CompletedProcess[str]
    dest: Path
    outside: Path
    before: dict[str, Any]          # the outside directory before the build


@pytest.fixture(scope="module")
def cache_tos(warm: tuple[Path, Path], context: Path,
              tmp_path_factory: pytest.TempPathFactory) -> dict[str, CacheTo]:
    """``build --cache-to type=local,dest=DIR`` into each prepared DIR, side by side, from
    the warm store (every step cached: the export starts at once)."""
    root, _ = warm
    base = tmp_path_factory.mktemp("cache-to")
    jobs, cases = {}, {}
    for name, prepare in PREPARED.items():
        tmp = base / name
        outside = _outside(tmp)
        dest = tmp / "dest"
        dest.mkdir()
        prepare(dest, outside)
        cases[name] = (dest, outside, snapshot(outside))
        jobs[name] = (["build", "-q", "--cache-to", f"type=local,dest={dest},mode=max",
                       str(context)], {**_env(tmp), "DISTILL_ROOT": str(root)})
    ran = run_batch(jobs, base)
    return {name: CacheTo(ran[name].proc, *cases[name]) for name in PREPARED}


@pytest.mark.parametrize("case", PREPARED)
def test_cache_to_a_prepared_directory_writes_nothing_outside(
        cache_tos: dict[str, CacheTo], warm: tuple[Path, Path], case: str) -> None:
    outcome = cache_tos[case]
    assert f"dest={outcome.dest}" in assert_clean_failure(outcome.proc, 2)
    assert snapshot(outcome.outside) == outcome.before
    assert_store_verified(warm[0])


def test_blobs_swapped_for_a_symlink_mid_export_lead_nowhere(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another user who can write in a shared cache directory swaps ``blobs/`` for a symlink
    to a victim's ``blobs/`` (a store's, full of 64-hex names) after the export began:
    no write, rename or clean-up reaches the victim. In-process, so the swap happens at
    a known moment (as the first layer is copied), not in a race a test may lose."""
    store = Store(tmp_path / "store")
    layers = []
    for i in range(3):
        digest, size = store.blobs.put_bytes(os.urandom(4096) + bytes([i]))
        layers.append(Descriptor(OCI_LAYER_GZIP, digest, size))
    victim = _outside(tmp_path)
    before = snapshot(victim)
    dest = tmp_path / "shared-cache"
    dest.mkdir()
    swapped: list[Digest] = []
    real_open = store.blobs.open

    def open_and_swap(digest: Digest) -> Any:
        if not swapped:
            os.rename(dest / "blobs", dest / "blobs.moved")
            os.symlink(victim, dest / "blobs")
            swapped.append(digest)
        return real_open(digest)

    monkeypatch.setattr(store.blobs, "open", open_and_swap)
    config, manifest = b'{"entries": {}}', b'{"a manifest": true}'
    cache_exchange._export_local(store, dest, config, manifest, layers)
    assert swapped
    assert snapshot(victim) == before
    # everything went into the directory the export opened (now named blobs.moved)
    written = {p.name for p in (dest / "blobs.moved" / "sha256").iterdir()}
    assert written == {d.digest.hex for d in layers} | {
        hashlib.sha256(config).hexdigest(), hashlib.sha256(manifest).hexdigest()}
    for path in (dest / "blobs.moved" / "sha256").iterdir():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name


# -- 4. --cache-from REPO@DIGEST uses only that cache ----------------------------------------

def _cache_server(cache: Path, ignore_reference: bool) -> tuple[EvilRegistry, str]:
    """A registry serving the local cache ``cache`` as repository ``cache``, and the digest
    of its manifest; with ``ignore_reference``, every manifest request gets the cache
    manifest, whatever it asks for (a registry whose tags were moved, or that lies)."""
    blobs = {f"sha256:{p.name}": p.read_bytes() for p in (cache / "blobs/sha256").iterdir()}
    manifest_digest = json.loads((cache / "index.json").read_text())["manifests"][0]["digest"]

    def hook(h: EvilHandler) -> bool:
        if not h.route.startswith("/v2/cache/"):
            return False
        name = h.route.rsplit("/", 1)[1]
        if "/manifests/" in h.route:
            if not ignore_reference and name != manifest_digest:
                return h.reply(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
            return h.reply(200, blobs[manifest_digest],
                           {"Docker-Content-Digest": manifest_digest}, OCI_MANIFEST)
        if name in blobs:
            return h.reply(200, blobs[name], content_type="application/octet-stream")
        return h.reply(404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}')

    return EvilRegistry(hook), manifest_digest


PINNED_ELSEWHERE = "sha256:" + "0" * 64


@pytest.fixture(scope="module")
def cache_froms(warm: tuple[Path, Path], context: Path,
                tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """An empty store builds ``context`` with ``--cache-from REPO@DIGEST``: pinned to
    another digest than the registry's manifest has, and (the control) to its own."""
    _, cache = warm
    base = tmp_path_factory.mktemp("cache-from")
    lying, _ = _cache_server(cache, ignore_reference=True)
    honest, digest = _cache_server(cache, ignore_reference=False)
    servers = {"pinned-elsewhere": (lying, PINNED_ELSEWHERE), "pinned-to-it": (honest, digest)}
    jobs = {}
    try:
        for name, (server, pin) in servers.items():
            server.start()
            (base / name).mkdir()
            jobs[name] = (["build", "--progress", "plain", "--cache-from",
                           f"type=registry,ref={server.host}/cache@{pin}", str(context)],
                          {**_env(base / name), "DISTILL_ROOT": str(base / name / "store")})
        ran = run_batch(jobs, base)
    finally:
        for server, _ in servers.values():
            server.stop()
    return {name: Outcome(ran[name].proc, ran[name].peak_kib, server.requests,
                          base / name / "store", server.host)
            for name, (server, _) in servers.items()}


def test_cache_from_pinned_by_digest_refuses_another_manifest(
        cache_froms: dict[str, Outcome]) -> None:
    """The registry answers the pinned digest with its cache manifest, which hashes to
    something else: a warning (a cache only saves time, as in buildx), and every step runs.
    Before the fix the digest was dropped and the tag 'None' asked for."""
    outcome = cache_froms["pinned-elsewhere"]
    stderr = outcome.proc.stderr
    assert outcome.proc.returncode == 0 and "Traceback" not in stderr, stderr
    asked = [r.route for r in outcome.requests if "/manifests/" in r.route]
    assert asked == [f"/v2/cache/manifests/{PINNED_ELSEWHERE}"]
    assert any("warning: cannot use cache" in line and PINNED_ELSEWHERE in line
               for line in stderr.splitlines()), stderr
    assert "CACHED" not in stderr, stderr
    assert_store_verified(outcome.root)


def test_cache_from_pinned_by_its_digest_is_used(cache_froms: dict[str, Outcome]) -> None:
    """The control: pinned to the digest it has, the same cache is a hit (both COPYs)."""
    outcome = cache_froms["pinned-to-it"]
    assert outcome.proc.returncode == 0, outcome.proc.stderr
    assert outcome.proc.stderr.count("CACHED") == 2, outcome.proc.stderr
    assert_store_verified(outcome.root)


# -- 5. hostile answers are errors, not tracebacks ---------------------------------------------

@pytest.mark.parametrize("scenario", HOSTILE_PULLS)
def test_hostile_pull_answers_are_errors(pulls: dict[str, Outcome], scenario: str) -> None:
    outcome = pulls[scenario]
    assert HOSTILE_PULLS[scenario][1] in assert_clean_failure(outcome.proc).lower()
    index = outcome.root / "index.json"
    assert not index.exists() or outcome.host not in index.read_text()   # nothing tagged
    assert_store_verified(outcome.root)


def test_unreadable_retry_after_is_ignored(pulls: dict[str, Outcome]) -> None:
    """``Retry-After: ²`` (a digit to str.isdigit, not to float) waits the usual delay,
    and the pull goes through."""
    outcome = pulls["retry-after-superscript"]
    assert outcome.proc.returncode == 0, outcome.proc.stderr
    assert "Traceback" not in outcome.proc.stderr
    assert [r.route for r in outcome.requests].count("/v2/") == 2
    assert_store_verified(outcome.root)


@pytest.mark.parametrize("host", BAD_HOSTS)
def test_unusable_host_names_in_from_are_errors(pulls: dict[str, Outcome], host: str) -> None:
    outcome = pulls[f"from-{host}"]
    assert_clean_failure(outcome.proc)
    assert_store_verified(outcome.root)


PUSH_ERRORS = {"location-unparseable": "elsewhere", "deep-json-on-manifest-put": "http 400"}


@pytest.mark.parametrize("scenario", PUSH_ERRORS)
def test_hostile_push_answers_are_errors(pushes: dict[str, PushOutcome],
                                         scenario: str) -> None:
    outcome = pushes[scenario]
    assert PUSH_ERRORS[scenario] in assert_clean_failure(outcome.proc).lower()
    assert_store_verified(outcome.root)


def test_unreadable_chunk_minimum_is_no_minimum(pushes: dict[str, PushOutcome]) -> None:
    """``OCI-Chunk-Min-Length: ²`` is no number: ignored, and the push goes through."""
    outcome = pushes["chunk-min-superscript"]
    assert outcome.proc.returncode == 0, outcome.proc.stderr
    assert "Traceback" not in outcome.proc.stderr
    assert any(r.method == "PUT" and "/manifests/" in r.route
               for r in outcome.registry.requests)
    assert_store_verified(outcome.root)


# -- 6. retry budgets, deadlines and rates -----------------------------------------------------

def test_503_storm_costs_one_retry_budget(pulls: dict[str, Outcome]) -> None:
    """Five 503s (Retry-After: 0), then a body that breaks off, over and over: the manifest
    is asked for Retry.attempts times in all, not Retry.attempts times per read retry."""
    outcome = pulls["503-storm"]
    assert_clean_failure(outcome.proc)
    assert sum(1 for r in outcome.requests if "/manifests/" in r.route) == ATTEMPTS
    assert_store_verified(outcome.root)


def test_503_storm_on_a_blob_costs_one_retry_budget(tmp_path: Path) -> None:
    """The same storm on a layer download: the 503s retried inside each request and the
    resumes of the broken-off body share one budget (not 6 x 6 requests and 30 waits of up
    to a minute each)."""
    image = TinyImage()

    def hook(h: EvilHandler) -> bool:
        if not h.route.endswith(image.layer_digest):
            return False
        if h.registry.count("GET", image.layer_digest) % ATTEMPTS:
            return h.reply(503, b"", {"Retry-After": "0"})
        return h.cut(len(image.layer), image.layer[:10])

    root = tmp_path / "store"
    with EvilRegistry(hook, image=image) as registry:
        with pytest.raises(RegistryError, match="cannot download layer"):
            _pull_in_process(registry, root, attempts=ATTEMPTS)
        assert registry.count("GET", image.layer_digest) == ATTEMPTS
    assert not (root / "blobs/sha256" / image.layer_digest.split(":")[1]).exists()
    assert_store_verified(root)


def test_trickling_blob_is_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A layer sent 64 bytes every 0.1 s (640 B/s, under MIN_RATE) is dropped once the grace
    period is over, on each try, and the pull fails: a server cannot hold it as long as it
    likes. (The grace is 60 s in use; 0.5 s here.)"""
    monkeypatch.setattr(pull_module, "RATE_GRACE", 0.5)
    image = TinyImage({"random.bin": os.urandom(50_000)})

    def hook(h: EvilHandler) -> bool:
        if h.route.endswith(image.layer_digest):
            return h.trickle(image.layer, piece=64, every=0.1, give_up_after=20)
        return False

    root = tmp_path / "store"
    with EvilRegistry(hook, image=image) as registry:
        started = time.monotonic()
        with pytest.raises(RegistryError, match="bytes/s"):
            _pull_in_process(registry, root)
        elapsed = time.monotonic() - started
        assert registry.count("GET", image.layer_digest) == 3
    assert elapsed < 8, elapsed
    assert not (root / "blobs/sha256" / image.layer_digest.split(":")[1]).exists()
    assert_store_verified(root)


def test_trickling_manifest_hits_the_body_deadline(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A manifest sent a byte every 0.05 s (never slow enough for a read to time out) is
    given up at the whole-body deadline (120 s in use; 1 s here), and not asked again."""
    monkeypatch.setattr(responses, "BODY_DEADLINE", 1.0)

    def hook(h: EvilHandler) -> bool:
        if "/manifests/" in h.route:
            return h.trickle(h.registry.image.manifest, piece=1, every=0.05,
                             give_up_after=20, content_type=OCI_MANIFEST)
        return False

    root = tmp_path / "store"
    with EvilRegistry(hook) as registry:
        started = time.monotonic()
        with pytest.raises(RegistryError, match="took more than"):
            _pull_in_process(registry, root)
        elapsed = time.monotonic() - started
        assert registry.count("GET", "/manifests/") == 1
    assert elapsed < 5, elapsed
    assert_store_verified(root)
