"""A build cache shared across machines (--cache-to / --cache-from, type=registry and
type=local): machine B, with an empty store, runs no step and makes machine A's digest;
mode=min and mode=max; a cache that lies is not believed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from distill.oci.reference import normalize_name
from tests.conftest import RunDistill
from tests.helpers.registry import RegistryServer, unique_repo

pytestmark = pytest.mark.integration

MARK = "step-ran-42"      # what the RUN steps print; their text says $((6*7))


def _digest(stdout: str) -> str:
    return stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def base_ref(busybox_image: str, store_root: Path, registry_http: RegistryServer) -> str:
    """busybox in the registry: both machines pull their base from it."""
    return registry_http.push_layout(store_root, normalize_name(busybox_image),
                                     f"{unique_repo('cachebase')}:1")


@pytest.fixture
def project(tmp_path: Path, base_ref: str) -> Path:
    ctx = tmp_path / "project"
    ctx.mkdir()
    (ctx / "src.txt").write_text("source\n")
    (ctx / "Dockerfile").write_text(
        f"FROM {base_ref} AS build\n"
        "RUN busybox echo step-ran-$((6*7))-1 && busybox mkdir /out && "
        "busybox echo built > /out/app\n"
        "RUN busybox echo step-ran-$((6*7))-2\n"      # changes no file: cached all the same
        "COPY src.txt /out/src.txt\n"
        f"FROM {base_ref}\n"
        "COPY --from=build /out /app\n"
        "RUN busybox echo step-ran-$((6*7))-3 && busybox cat /app/app > /copied\n"
        'CMD ["/bin/busybox", "cat", "/copied"]\n')
    return ctx


def _build(distill: RunDistill, root: Path, ctx: Path, *flags: str) -> tuple[str, str]:
    proc = distill("build", "--progress", "plain", *flags, str(ctx), root=root)
    return _digest(proc.stdout), proc.stderr


def test_machine_b_runs_no_step_and_makes_the_same_image(
        distill: RunDistill, project: Path, registry_http: RegistryServer,
        tmp_path: Path) -> None:
    cache = registry_http.ref(f"{unique_repo('buildcache')}:main")
    digest_a, log_a = _build(distill, tmp_path / "machine-a", project,
                             "--cache-from", f"type=registry,ref={cache}",     # none yet
                             "--cache-to", f"type=registry,ref={cache},mode=max")
    assert f"{MARK}-1" in log_a and f"{MARK}-3" in log_a
    assert "no cache at" in log_a
    digest_b, log_b = _build(distill, tmp_path / "machine-b", project,
                             "--cache-from", f"type=registry,ref={cache}")
    assert MARK not in log_b, log_b                 # no RUN ran on machine B
    assert log_b.count("CACHED") == 5
    assert digest_b == digest_a
    # the cache is an OCI artifact any registry tool can read
    manifest = json.loads(registry_http.get_manifest(
        cache.split("/", 1)[1].split(":")[0], "main")[0])
    assert manifest["config"]["mediaType"] == "application/vnd.distill.cache.v1+json"


def test_a_rebuild_from_the_local_cache_is_the_same_image(distill: RunDistill, project: Path,
                                                          tmp_path: Path) -> None:
    root = tmp_path / "store"
    first, _ = _build(distill, root, project)
    again, log = _build(distill, root, project)
    assert MARK not in log and again == first


def test_local_cache_directory(distill: RunDistill, project: Path, tmp_path: Path) -> None:
    cache = tmp_path / "ci-cache"
    digest_a, _ = _build(distill, tmp_path / "a", project,
                         "--cache-to", f"type=local,dest={cache},mode=max")
    assert (cache / "index.json").is_file() and (cache / "oci-layout").is_file()
    digest_b, log_b = _build(distill, tmp_path / "b", project,
                             "--cache-from", f"type=local,src={cache}")
    assert MARK not in log_b and digest_b == digest_a


def test_mode_min_keeps_only_the_final_stage(distill: RunDistill, project: Path,
                                             tmp_path: Path) -> None:
    small, full = tmp_path / "min", tmp_path / "max"
    root = tmp_path / "a"
    _build(distill, root, project, "--cache-to", f"type=local,dest={small}")
    _build(distill, root, project, "--cache-to", f"type=local,dest={full},mode=max")

    def entries(cache: Path) -> dict[str, object]:
        index = json.loads((cache / "index.json").read_text())
        manifest = json.loads((cache / "blobs/sha256" / index["manifests"][0]["digest"]
                               .split(":")[1]).read_text())
        config = json.loads((cache / "blobs/sha256" / manifest["config"]["digest"]
                             .split(":")[1]).read_text())
        return dict(config["entries"])

    # the final stage: COPY --from (keyed by the stage's layers and by the content it
    # copies), RUN; mode=max adds the build stage's RUN, RUN, COPY
    assert len(entries(small)) == 3
    assert len(entries(full)) == 6
    assert set(entries(small)) < set(entries(full))
    # with only the final stage cached, machine B builds the build stage again; its
    # layers differ (other file times) but the files COPY --from takes do not: a hit
    _, log = _build(distill, tmp_path / "b", project, "--cache-from",
                    f"type=local,src={small}")
    assert f"{MARK}-1" in log and f"{MARK}-3" not in log


def test_a_cache_that_lies_is_not_believed(distill: RunDistill, project: Path,
                                           tmp_path: Path) -> None:
    """An entry whose layer does not unpack to the diff_id it claims is no hit; a blob
    that does not hash to its name is refused. The step runs, the build succeeds."""
    cache = tmp_path / "cache"
    digest_a, _ = _build(distill, tmp_path / "a", project,
                         "--cache-to", f"type=local,dest={cache},mode=max")
    index = json.loads((cache / "index.json").read_text())
    mpath = cache / "blobs/sha256" / index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads(mpath.read_text())
    cpath = cache / "blobs/sha256" / manifest["config"]["digest"].split(":")[1]
    config = json.loads(cpath.read_text())
    # every layer entry claims the diff_id of another one
    layered = [e for e in config["entries"].values() if "diff_id" in e]
    assert len(layered) >= 2
    first = layered[0]["diff_id"]
    for i, entry in enumerate(layered):
        entry["diff_id"] = layered[(i + 1) % len(layered)]["diff_id"] if i + 1 < len(
            layered) else first
    forged = tmp_path / "forged"
    shutil.copytree(cache, forged)
    _rewrite(forged, config)
    digest_b, log_b = _build(distill, tmp_path / "b", project,
                             "--cache-from", f"type=local,src={forged}")
    assert f"{MARK}-1" in log_b and f"{MARK}-3" in log_b     # the steps ran
    assert digest_b != "" and "Traceback" not in log_b

    # layer blobs that were tampered with: refused with a warning; the steps run. Every
    # entry's blob, not the first one's: the entries' order follows their keys, which
    # differ from run to run, and the first may be a COPY's, which prints no MARK (a
    # flake a CI run met)
    tampered = tmp_path / "tampered"
    shutil.copytree(cache, tampered)
    for digest in {e["blob"]["digest"] for e in layered}:
        blob = tampered / "blobs/sha256" / digest.split(":")[1]
        data = bytearray(blob.read_bytes())
        data[len(data) // 2] ^= 0xFF
        blob.write_bytes(bytes(data))
    _, log_c = _build(distill, tmp_path / "c", project,
                      "--cache-from", f"type=local,src={tampered}")
    assert "warning: cache" in log_c
    assert MARK in log_c


def _rewrite(cache: Path, config: dict[str, object]) -> None:
    """Write a changed cache config into a local cache, relinking manifest and index."""
    import hashlib

    def put(data: bytes) -> str:
        hexname = hashlib.sha256(data).hexdigest()
        (cache / "blobs/sha256" / hexname).write_bytes(data)
        return hexname

    cdata = json.dumps(config).encode()
    index = json.loads((cache / "index.json").read_text())
    mpath = cache / "blobs/sha256" / index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads(mpath.read_text())
    manifest["config"].update(digest="sha256:" + put(cdata), size=len(cdata))
    mdata = json.dumps(manifest).encode()
    index["manifests"][0].update(digest="sha256:" + put(mdata), size=len(mdata))
    (cache / "index.json").write_text(json.dumps(index))


def test_bad_cache_flags_are_usage_errors(distill: RunDistill, project: Path) -> None:
    for flags in (["--cache-to", "type=registry"], ["--cache-to", "type=gha"],
                  ["--cache-to", "type=local,dest=/x,mode=all"],
                  ["--cache-from", "type=local"]):
        proc = distill("build", *flags, str(project), check=False)
        assert proc.returncode == 2, (flags, proc.stderr)
        assert "Traceback" not in proc.stderr


def test_ignore_error_makes_a_failed_export_a_warning(distill: RunDistill, project: Path,
                                                     tmp_path: Path) -> None:
    down = "127.0.0.1:9/cache:x"      # the discard port: nothing listens
    proc = distill("build", "--cache-to", f"type=registry,ref={down}", str(project),
                   root=tmp_path / "a", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    proc = distill("build", "--cache-to", f"type=registry,ref={down},ignore-error=true",
                   str(project), root=tmp_path / "a")
    assert "warning: cache export" in proc.stderr
