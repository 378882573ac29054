"""``distill analyze IMAGE`` run as users run it, its figures checked against tools that
share no code with distill: umoci (the image unpacked as a runtime would), skopeo (the
manifest and config as written), gzip (each layer's bytes), ``go version -m`` (a Go
binary's build info), the image's own dpkg records, the official SBOM schemas, and
arithmetic done by hand from dive's rules (wagoodman/dive, filetree/efficiency.go).

What it proves:

* the waste of an image whose sizes are known exactly (``dd``) is exactly that, by
  distill's rule and by dive's (efficiency, dive's wasted bytes);
* the file tree, sizes, kinds and per-layer figures agree with what umoci unpacks and
  what the layout holds, for that image, examples/go-hello, and differential cases with
  hard links, symlinks, whiteouts, opaque directories and ``COPY --chown``;
* the SBOMs name what ``go version -m`` and the dpkg records name, and are schema-valid;
* ``--ci`` and the thresholds pass and fail as dive's would;
* an image from the store, an OCI layout, a docker archive and a registry is one image;
* bad and hostile input are clean errors or a report, and write nothing anywhere.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import subprocess
import tarfile
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from distill.oci.reference import normalize_name
from tests.conftest import REPO, RunDistill
from tests.differential.cases import CASES
from tests.differential.references import REF
from tests.differential.runner import prepare_context
from tests.helpers.readback import skopeo_copy, skopeo_inspect, tree_snapshot, umoci_unpack
from tests.helpers.registry import RegistryServer, unique_repo
from tests.hostile.harness import Layout, f, sha256, sym, tar
from tests.unit.test_sbom import _errors, _validator

pytestmark = pytest.mark.integration

GO_HELLO = REPO / "examples" / "go-hello"

# -- the known-waste image ------------------------------------------------------------------
# Every size is exact (dd of bs=1000). Layer 0 is busybox; layers 1-3 are these RUNs.
WASTE_DOCKERFILE = """\
FROM busybox:latest
RUN dd if=/dev/zero of=/big bs=1000 count=3000 \\
 && mkdir -p /d/sub \\
 && dd if=/dev/zero of=/d/a bs=1000 count=1000 \\
 && dd if=/dev/zero of=/d/sub/b bs=1000 count=500 \\
 && dd if=/dev/zero of=/over bs=1000 count=200 \\
 && dd if=/dev/zero of=/keep bs=1000 count=50
RUN rm /big && rm -rf /d && dd if=/dev/zero of=/over bs=1000 count=100
RUN chmod 600 /keep
"""
#: path -> (layer that overwrote or deleted it, bytes lost): /big deleted (3 MB), /d
#: deleted as one directory (1 MB + 500 kB), /over's 200 kB overwritten by 100 kB, /keep
#: copied up whole by the chmod of layer 3 (50 kB).
WASTE = {"/big": (2, 3_000_000), "/d": (2, 1_500_000), "/over": (2, 200_000),
         "/keep": (3, 50_000)}


# -- small helpers ------------------------------------------------------------------------

def write_context(where: Path, dockerfile: str, files: dict[str, bytes] | None = None) -> Path:
    where.mkdir(parents=True)
    (where / "Dockerfile").write_text(dockerfile)
    for name, data in (files or {}).items():
        (where / name).write_bytes(data)
    return where


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def build(distill: RunDistill, ctx: Path, tag: str, *extra: str) -> str:
    """``distill build`` into the store (or where ``extra`` says); the image digest."""
    return last_line(distill("build", "--progress", "plain", "-t", tag, *extra,
                             str(ctx)).stdout)


def export_layout(distill: RunDistill, ctx: Path, tag: str, dest: Path) -> str:
    """The same build (from the cache) written as an OCI layout directory, ref = tag's."""
    return build(distill, ctx, tag, "--output", f"type=oci,dest={dest},tar=false")


def analyze_json(distill: RunDistill, image: str, *extra: str,
                 root: Path | None = None) -> dict[str, Any]:
    proc = distill("analyze", "--json", "--top", "1000", *extra, image, root=root)
    assert "Traceback" not in proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def tree_nodes(tree: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """analyze's nested ``tree`` as {relative path: node}, the root left out."""
    out: dict[str, dict[str, Any]] = {}
    todo = [("", tree)]
    while todo:
        prefix, node = todo.pop()
        for child in node.get("children", []):
            path = prefix + child["name"]
            assert path not in out, f"{path} twice in the tree"
            out[path] = child
            todo.append((path + "/", child))
    return out


def numbers(doc: dict[str, Any]) -> dict[str, Any]:
    """What must not depend on where an image was read from (compression aside)."""
    return {"uncompressed": doc["size"]["uncompressed"], "files": doc["size"]["files"],
            "efficiency": doc["efficiency"], "wasted_bytes": doc["wasted_bytes"],
            "user_wasted_percent": doc["user_wasted_percent"],
            "dive_wasted_bytes": doc["dive_wasted_bytes"], "wasted": doc["wasted"],
            "largest": doc["largest"], "tree": doc["tree"],
            "layers": [(layer["diff_id"], layer["uncompressed"], layer["created_by"],
                        layer["entries"], layer["deletions"], layer["file_bytes"])
                       for layer in doc["layers"]]}


def tar_file_bytes(path: Path) -> int:
    """Bytes of the regular files in a tar, read with Python's tarfile."""
    with tarfile.open(path) as t:
        return sum(m.size for m in t if m.isreg())


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr


# -- reading the layout and the unpacked rootfs independently ------------------------------

@dataclass(frozen=True)
class LayoutLayer:
    digest: str
    media_type: str
    blob_size: int            # the blob file's size on disk
    uncompressed: int         # bytes after gzip -d (or the blob's, uncompressed)
    diff_id: str              # sha256 of those bytes
    created_by: str           # from skopeo's reading of the config's history


def layout_layers(layout: Path, ref: str) -> list[LayoutLayer]:
    """Each layer of ``layout:ref`` as skopeo and gzip see it."""
    info = skopeo_inspect(layout, ref)
    made = [h.get("created_by", "") for h in info["config"].get("history", [])
            if not h.get("empty_layer")]
    out = []
    for i, desc in enumerate(info["manifest"]["layers"]):
        blob = layout / "blobs" / "sha256" / desc["digest"].split(":", 1)[1]
        digest, count = hashlib.sha256(), 0
        media = desc["mediaType"]
        assert media.endswith(("tar+gzip", "tar.gzip", ".tar")), media
        opener = gzip.open if "gzip" in media else open
        with opener(blob, "rb") as raw:
            while chunk := raw.read(1 << 20):
                digest.update(chunk)
                count += len(chunk)
        out.append(LayoutLayer(desc["digest"], media, blob.stat().st_size, count,
                               "sha256:" + digest.hexdigest(),
                               made[i] if len(made) == len(info["manifest"]["layers"])
                               else ""))
    return out


def assert_agrees_with_umoci(doc: dict[str, Any], layout: Path, ref: str,
                             work: Path) -> None:
    """analyze's report of ``layout:ref`` against umoci's unpacking of it and the
    layout's own blobs and config."""
    rootfs = umoci_unpack(layout, ref, work / "bundle")
    snap = tree_snapshot(rootfs)
    snap.pop(".")
    nodes = tree_nodes(doc["tree"])
    assert sorted(nodes) == sorted(snap), (
        f"only in analyze: {sorted(set(nodes) - set(snap))[:20]}; "
        f"only in umoci: {sorted(set(snap) - set(nodes))[:20]}")
    problems = []
    for path, node in nodes.items():
        seen = snap[path]
        if node["kind"] == "hardlink":
            # a tar hard link: in umoci, a regular file sharing its inode with the file
            # the link names, whose size analyze gives
            target = nodes.get(node["link"])
            if seen["type"] != "file" or seen["hardlink"] is None:
                problems.append(f"{path}: hardlink in analyze, {seen['type']} "
                                f"(hardlink group {seen['hardlink']}) in umoci")
            elif target is None or target.get("kind") != "file":
                problems.append(f"{path}: a hard link to {node['link']!r}, which analyze "
                                f"does not show as a file ({target})")
            elif snap[node["link"]]["hardlink"] != seen["hardlink"] or \
                    target["size"] != seen["size"]:
                problems.append(f"{path}: hard link to {node['link']} disagrees: analyze "
                                f"{target['size']} B, umoci {seen}")
            continue
        if node["kind"] != seen["type"]:
            problems.append(f"{path}: {node['kind']} in analyze, {seen['type']} in umoci")
        elif node["kind"] == "file" and node["size"] != seen["size"]:
            problems.append(f"{path}: {node['size']} B in analyze, {seen['size']} in umoci")
        elif node["kind"] == "symlink" and node.get("link") != seen["target"]:
            problems.append(f"{path}: -> {node.get('link')} in analyze, "
                            f"-> {seen['target']} in umoci")
    assert problems == []
    unique_files = sum(e["size"] for p, e in snap.items() if e["type"] == "file"
                       and e["hardlink"] in (None, p))
    assert doc["size"]["files"] == unique_files
    assert doc["tree"]["size"] == unique_files

    layers = layout_layers(layout, ref)
    assert [(x["index"], x["digest"], x["compressed"], x["uncompressed"], x["diff_id"],
             x["created_by"]) for x in doc["layers"]] == \
        [(i, x.digest, x.blob_size, x.uncompressed, x.diff_id, x.created_by)
         for i, x in enumerate(layers)]
    assert doc["size"]["compressed"] == sum(x.blob_size for x in layers)
    assert doc["size"]["uncompressed"] == sum(x.uncompressed for x in layers)
    shutil.rmtree(work / "bundle")


# -- images the tests share -----------------------------------------------------------------

@dataclass(frozen=True)
class Built:
    name: str          # in the session store
    digest: str
    layout: Path       # the same image as an OCI layout directory...
    ref: str           # ...under this ref


def build_and_export(distill: RunDistill, ctx: Path, name: str, layout: Path) -> Built:
    digest = build(distill, ctx, name)
    assert export_layout(distill, ctx, name, layout) == digest
    return Built(name, digest, layout, name.rpartition(":")[2])


@pytest.fixture(scope="module")
def known_waste(distill: RunDistill, busybox_image: str,
                tmp_path_factory: pytest.TempPathFactory) -> Built:
    work = tmp_path_factory.mktemp("analyze-waste")
    ctx = write_context(work / "ctx", WASTE_DOCKERFILE)
    return build_and_export(distill, ctx, "analyze-waste:1", work / "layout")


@pytest.fixture(scope="module")
def lean(distill: RunDistill, busybox_image: str,
         tmp_path_factory: pytest.TempPathFactory) -> str:
    """busybox and one small COPY: nothing wasted."""
    ctx = write_context(tmp_path_factory.mktemp("analyze-lean") / "ctx",
                        f"FROM {busybox_image}\nCOPY hello.txt /hello.txt\n",
                        {"hello.txt": b"hello, lean image\n"})
    build(distill, ctx, "analyze-lean:1")
    return "analyze-lean:1"


@pytest.fixture(scope="module")
def go_hello(distill: RunDistill, debian_image: str, distroless_static: str,
             tmp_path_factory: pytest.TempPathFactory) -> Built:
    """examples/go-hello as tests/integration/test_go_example.py builds it (its bases,
    the example directory as the context), once for the module."""
    work = tmp_path_factory.mktemp("analyze-go")
    return build_and_export(distill, GO_HELLO, "analyze-go-hello:1", work / "layout")


@pytest.fixture(scope="module")
def go_hello_rootfs(go_hello: Built, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return umoci_unpack(go_hello.layout, go_hello.ref,
                        tmp_path_factory.mktemp("analyze-go-unpacked") / "bundle")


# -- 1. known waste ---------------------------------------------------------------------------

def test_known_waste_is_exactly_what_was_deleted_and_overwritten(
        distill: RunDistill, known_waste: Built, busybox_tar: Path) -> None:
    """wasted_bytes and the ``wasted`` list are the bytes the RUNs deleted, overwrote and
    copied up (chmod), path by path with the layer that did it; efficiency and
    dive_wasted_bytes are dive's figures, worked out by hand below."""
    doc = analyze_json(distill, known_waste.name)
    assert doc["digest"] == known_waste.digest
    assert {w["path"]: (w["by_layer"], w["bytes"]) for w in doc["wasted"]} == WASTE
    assert [w["bytes"] for w in doc["wasted"]] == sorted(b for _, b in WASTE.values())[::-1]
    assert doc["wasted_bytes"] == 4_750_000 == sum(b for _, b in WASTE.values())

    # dive visits, per layer, the leaves of that layer's tree (directories and links have
    # size 0; a whiteout counts the bytes of the directory it deletes, 0 for a file):
    #   path      layer 0  layer 1    layer 2           layer 3   cumulative  smallest
    #   busybox   BASE     -          -                 -         BASE        BASE
    #   /big      -        3_000_000  0 (.wh. of file)  -         3_000_000   0
    #   /d/a      -        1_000_000  -                 -         1_000_000   1_000_000
    #   /d/sub/b  -          500_000  -                 -           500_000     500_000
    #   /d        -        (no leaf)  1_500_000 (.wh.)  -         1_500_000   1_500_000
    #   /over     -          200_000  100_000           -           300_000     100_000
    #   /keep     -           50_000  -                 50_000      100_000      50_000
    # efficiency = sum(smallest) / sum(cumulative); dive's wasted bytes = the cumulative
    # size of every path visited twice or more (/big, /over, /keep).
    base = tar_file_bytes(busybox_tar)
    cumulative = base + 3_000_000 + 1_000_000 + 500_000 + 1_500_000 + 300_000 + 100_000
    smallest = base + 0 + 1_000_000 + 500_000 + 1_500_000 + 100_000 + 50_000
    assert doc["efficiency"] == round(smallest / cumulative, 6)
    assert doc["dive_wasted_bytes"] == 3_000_000 + 300_000 + 100_000

    # what is left: busybox plus /over (100 kB) and /keep (50 kB)
    assert doc["size"]["files"] == base + 100_000 + 50_000
    user = sum(layer["uncompressed"] for layer in doc["layers"][1:])
    assert doc["user_wasted_percent"] == round(100 * 4_750_000 / user, 4)
    assert [layer["file_bytes"] for layer in doc["layers"]] == \
        [base, 4_750_000, 100_000, 50_000]
    assert [layer["deletions"] for layer in doc["layers"]] == [0, 0, 2, 0]
    nodes = tree_nodes(doc["tree"])
    assert {p: nodes[p]["layer"] for p in ("over", "keep")} == {"over": 2, "keep": 3}
    assert not {"big", "d"} & set(nodes)
    largest = {e["path"]: (e["size"], e["layer"]) for e in doc["largest"]}
    assert largest["/over"] == (100_000, 2) and largest["/keep"] == (50_000, 3)


def test_known_waste_text_report(distill: RunDistill, known_waste: Built) -> None:
    """The report users read names the wasted paths and the figures of the JSON."""
    out = distill("analyze", known_waste.name).stdout
    assert known_waste.digest in out
    assert "efficiency: 61.23 %" in out
    assert "wasted: 4.8 MB" in out
    shown = {"/big": "3.0 MB", "/d": "1.5 MB", "/over": "200.0 kB", "/keep": "50.0 kB"}
    rows = {tuple(line.split()) for line in out.splitlines()}
    for path, (layer, _) in WASTE.items():      # size, path, added in, removed by
        assert (*shown[path].split(), path, "1", str(layer)) in rows, out


# -- 2. agreement with umoci, gzip and skopeo ---------------------------------------------

def test_known_waste_agrees_with_umoci(distill: RunDistill, known_waste: Built,
                                       tmp_path: Path) -> None:
    """Every visible path, kind and size, and every layer's sizes and instruction, as
    umoci, gzip and skopeo read the same image."""
    doc = analyze_json(distill, known_waste.name)
    assert_agrees_with_umoci(doc, known_waste.layout, known_waste.ref, tmp_path)


def test_go_hello_agrees_with_umoci(distill: RunDistill, go_hello: Built,
                                    tmp_path: Path) -> None:
    """examples/go-hello's final image (distroless static + the binary)."""
    doc = analyze_json(distill, go_hello.name)
    assert doc["digest"] == go_hello.digest
    assert doc["user"] == "65532"
    assert_agrees_with_umoci(doc, go_hello.layout, go_hello.ref, tmp_path)


#: hard links by RUN (one whose file a later layer deletes, /k2) and by COPY, symlinks by
#: COPY and RUN, whiteouts of files and directories, opaque directories, COPY --chown
DIFFERENTIAL = ["hardlink_run", "hardlink_copy", "symlink_copy", "symlink_run",
                "whiteout_files", "opaque_dir", "copy_chown_name"]


@pytest.mark.parametrize("case", DIFFERENTIAL)
def test_differential_case_agrees_with_umoci(distill: RunDistill, busybox_image: str,
                                             case: str, tmp_path: Path) -> None:
    """Differential cases (hard links from COPY and RUN, symlinks, whiteouts, opaque
    directories, COPY --chown), built as tests/differential/runner.py builds them and
    analysed as the OCI layout the build wrote."""
    spec = CASES[case]
    ctx = prepare_context(spec, tmp_path / "context")
    layout = tmp_path / "distill.oci"
    args = ["build", "--progress", "plain", "-f", str(ctx / "Dockerfile"),
            "--output", f"type=oci,dest={layout},tar=false",
            "-t", f"differential-{case.replace('_', '-')}:{REF}", "--allow", "network.host"]
    for key, value in spec.build_args.items():
        args += ["--build-arg", f"{key}={value}"]
    if spec.target:
        args += ["--target", spec.target]
    distill(*args, str(ctx))
    doc = analyze_json(distill, f"oci-layout://{layout}:{REF}")
    assert_agrees_with_umoci(doc, layout, REF, tmp_path)
    # ...and the case did exercise what it is here for
    kinds = {(n["kind"], n["layer"] > 0) for n in tree_nodes(doc["tree"]).values()}
    deletions = sum(layer["deletions"] for layer in doc["layers"])
    if case.startswith("hardlink"):
        assert ("hardlink", True) in kinds
    if case.startswith("symlink"):
        assert ("symlink", True) in kinds
    if case in ("whiteout_files", "opaque_dir"):
        assert deletions > 0 and doc["wasted_bytes"] > 0


# -- 3. SBOM ---------------------------------------------------------------------------------

def go_build_info(binary: Path) -> dict[str, Any]:
    """``go version -m BINARY``: the Go version, the main module and its deps."""
    out = subprocess.run(["go", "version", "-m", str(binary)], capture_output=True,
                         text=True, check=True).stdout
    lines = out.splitlines()
    info: dict[str, Any] = {"go": lines[0].rsplit(": ", 1)[1].strip(), "deps": {}}
    for line in lines[1:]:
        fields = line.strip().split("\t")
        if fields[0] == "path":
            info["path"] = fields[1]
        elif fields[0] == "mod":
            info["mod"] = (fields[1], fields[2])
        elif fields[0] == "dep":
            info["deps"][fields[1]] = fields[2]
    return info


def sbom(distill: RunDistill, image: str, kind: str, dest: Path) -> dict[str, Any]:
    proc = distill("analyze", "--sbom", kind, "-o", str(dest), image)
    no_traceback(proc)
    assert proc.stdout == ""        # the document went to the file
    doc: dict[str, Any] = json.loads(dest.read_text())
    return doc


def spdx_packages(doc: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(name, version, purl) of each SPDX package with a purl."""
    return [(p["name"], p.get("versionInfo", ""), ref["referenceLocator"])
            for p in doc["packages"] for ref in p.get("externalRefs", [])
            if ref["referenceType"] == "purl"]


def cyclonedx_components(doc: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(c["name"], c.get("version", ""), c["purl"]) for c in doc["components"]
            if "purl" in c]


def assert_valid(doc: dict[str, Any], kind: str) -> None:
    if kind == "spdx":
        assert _errors(_validator("spdx-schema.json"), doc) == []
    else:
        validator = _validator("bom-1.5.schema.json", "spdx.schema.json",
                               "jsf-0.82.schema.json")
        assert _errors(validator, doc) == []


@pytest.mark.parametrize("kind", ["spdx", "cyclonedx"])
def test_sbom_of_go_hello_names_its_go_module(distill: RunDistill, go_hello: Built,
                                              go_hello_rootfs: Path, kind: str,
                                              tmp_path: Path) -> None:
    """The binary's module (as go.mod names it), its Go version and any deps appear as
    pkg:golang packages, as ``go version -m`` on the unpacked binary reports them."""
    module = next(line.split()[1] for line in (GO_HELLO / "go.mod").read_text().splitlines()
                  if line.startswith("module "))
    info = go_build_info(go_hello_rootfs / "hello")
    assert info["path"] == module and info["mod"][0] == module
    doc = sbom(distill, go_hello.name, kind, tmp_path / f"sbom.{kind}.json")
    assert_valid(doc, kind)
    found = spdx_packages(doc) if kind == "spdx" else cyclonedx_components(doc)
    golang = {name: (version, purl) for name, version, purl in found
              if purl.startswith("pkg:golang/")}
    version, purl = golang[module]
    assert version == info["mod"][1]
    assert purl.split("@")[0].split("?")[0] == f"pkg:golang/{module}"
    assert golang["stdlib"] == (info["go"].removeprefix("go"),
                                f"pkg:golang/stdlib@{info['go'].removeprefix('go')}")
    for dep, dep_version in info["deps"].items():
        assert golang[dep][0] == dep_version
        assert golang[dep][1].startswith(f"pkg:golang/{dep}@{dep_version}")
    assert set(golang) == {module, "stdlib", *info["deps"]}
    text = json.dumps(doc)
    assert info["go"] in text                    # golang:go-version=go1.x.y
    assert "/hello" in text                      # where it was found


def dpkg_status_d(rootfs: Path) -> dict[str, str]:
    """Package -> Version from the image's own var/lib/dpkg/status.d records."""
    out: dict[str, str] = {}
    for record in sorted((rootfs / "var/lib/dpkg/status.d").iterdir()):
        if record.name.endswith(".md5sums"):
            continue
        for stanza in record.read_text().split("\n\n"):
            fields = dict(line.split(": ", 1) for line in stanza.splitlines()
                          if ": " in line and not line.startswith(" "))
            if "Package" in fields:
                out[fields["Package"]] = fields["Version"]
    return out


@pytest.fixture(scope="module")
def python3_layout(distill: RunDistill, distroless_python3: str, store_root: Path,
                   tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The fixture's image copied by skopeo out of the store (itself an OCI layout) into
    a layout of its own: the very image the store names, by digest. (A FROM-only build
    would not do: it is another image, with its own config.)"""
    layout = tmp_path_factory.mktemp("analyze-python3") / "layout"
    skopeo_copy(f"oci:{store_root}:{normalize_name(distroless_python3)}", f"oci:{layout}:1")
    digest = skopeo_inspect(layout, "1")["manifest_digest"]
    assert analyze_json(distill, distroless_python3)["digest"] == digest
    return Built(distroless_python3, digest, layout, "1")


@pytest.mark.parametrize("kind", ["spdx", "cyclonedx"])
def test_sbom_of_distroless_python3_lists_its_debian_packages(
        distill: RunDistill, python3_layout: Built, kind: str, tmp_path: Path) -> None:
    """Every Debian package the image's status.d records (umoci-unpacked), with its
    Debian version, and no other; purls pkg:deb/debian/NAME@VERSION."""
    rootfs = umoci_unpack(python3_layout.layout, python3_layout.ref, tmp_path / "bundle")
    expected = dpkg_status_d(rootfs)
    assert "libpython3.11-minimal" in expected or any(n.startswith("python3")
                                                      for n in expected)
    doc = sbom(distill, python3_layout.name, kind, tmp_path / f"sbom.{kind}.json")
    assert_valid(doc, kind)
    found = spdx_packages(doc) if kind == "spdx" else cyclonedx_components(doc)
    debs = {}
    for name, version, purl in found:
        if purl.startswith("pkg:deb/"):
            where, _, rest = purl.partition("@")
            assert urllib.parse.unquote(where) == f"pkg:deb/debian/{name}", purl
            assert urllib.parse.unquote(rest.split("?")[0]) == version, purl
            debs[name] = version
    assert debs == expected


# -- 4. CI thresholds ---------------------------------------------------------------------

def test_ci_fails_the_wasteful_image_with_dives_defaults(distill: RunDistill,
                                                         known_waste: Built) -> None:
    """dive's defaults (efficiency >= 0.9, wasted <= 10 % of the user layers): the
    known-waste image (efficiency 0.61) fails both."""
    proc = distill("analyze", "--ci", known_waste.name, check=False)
    no_traceback(proc)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert any(line.strip().startswith("FAIL: min-efficiency: efficiency 0.6123")
               for line in lines), proc.stdout
    assert any(line.strip().startswith("FAIL: max-wasted-ratio") for line in lines)
    assert lines[-1].startswith("Result: FAIL")


def test_ci_passes_a_lean_image(distill: RunDistill, lean: str) -> None:
    proc = distill("analyze", "--ci", lean, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASS: min-efficiency: efficiency 1.0000" in proc.stdout
    assert proc.stdout.splitlines()[-1].startswith("Result: PASS")


@pytest.mark.parametrize(("limit", "code", "result"), [("1kB", 1, "FAIL"),
                                                       ("1GB", 0, "PASS")])
def test_max_size(distill: RunDistill, lean: str, limit: str, code: int,
                  result: str) -> None:
    proc = distill("analyze", "--max-size", limit, lean, check=False)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert f"{result}: max-size" in proc.stdout
    assert proc.stdout.splitlines()[-1].startswith(f"Result: {result} ")


@pytest.mark.parametrize(("flag", "value", "code"), [
    ("--max-wasted", "4750000", 0), ("--max-wasted", "4749999", 1),
    ("--min-efficiency", "0.61", 0), ("--min-efficiency", "0.62", 1),
    ("--max-wasted-ratio", "0.97", 0), ("--max-wasted-ratio", "0.96", 1),
])
def test_each_threshold_is_exact(distill: RunDistill, known_waste: Built, flag: str,
                                 value: str, code: int) -> None:
    """Each threshold at the known figures (wasted 4_750_000 B, efficiency 0.6123,
    wasted ratio 0.9645): at the edge it passes, one step past it fails."""
    proc = distill("analyze", flag, value, known_waste.name, check=False)
    assert proc.returncode == code, proc.stdout + proc.stderr


def test_fail_on_high_names_the_private_key(distill: RunDistill, busybox_image: str,
                                            lean: str, tmp_path: Path) -> None:
    """A PEM private key COPYed into /root/.ssh is a high finding: --fail-on high fails
    and names its path; the lean image passes the same check."""
    key = tmp_path / "id_ed25519"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(key)],
                   check=True, capture_output=True)
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    ctx = write_context(tmp_path / "ctx", f"FROM {busybox_image}\n"
                        "COPY id_ed25519 /root/.ssh/id_rsa\n", {"id_ed25519": key.read_bytes()})
    name = "analyze-secret:1"
    build(distill, ctx, name)
    proc = distill("analyze", "--fail-on", "high", name, check=False)
    no_traceback(proc)
    assert proc.returncode == 1, proc.stdout
    finding = [line.split()[:4] for line in proc.stdout.splitlines()
               if line.startswith("high ")]
    assert finding == [["high", "secret", "/root/.ssh/id_rsa", "1"]], proc.stdout
    assert "FAIL: fail-on high: 1 finding(s)" in proc.stdout
    assert distill("analyze", "--fail-on", "high", lean, check=False).returncode == 0

    doc = json.loads(distill("analyze", "--json", "--fail-on", "high", name,
                             check=False).stdout)
    assert {(s["severity"], s["path"]) for s in doc["security"]
            if s["category"] == "secret"} == {("high", "/root/.ssh/id_rsa")}
    assert doc["ci"] == [{"rule": "fail-on high", "passed": False,
                          "detail": "1 finding(s) of severity high"}]


def test_json_ci_has_the_checks(distill: RunDistill, known_waste: Built) -> None:
    """--json --ci: the report as JSON with a "ci" array, and the exit code of --ci."""
    proc = distill("analyze", "--json", "--ci", known_waste.name, check=False)
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert [(c["rule"], c["passed"]) for c in doc["ci"]] == \
        [("min-efficiency", False), ("max-wasted-ratio", False)]
    assert doc["wasted_bytes"] == 4_750_000


# -- 5. sources --------------------------------------------------------------------------

def test_store_layout_and_docker_archives_are_one_image(
        distill: RunDistill, known_waste: Built, tmp_path: Path) -> None:
    """By store name, as oci-layout://DIR:TAG and as distill's own docker archive: the
    same digest and figures. As skopeo's docker archive (layers stored uncompressed, so
    another manifest and digest): the same layers (diff_ids) and every other figure."""
    by_name = analyze_json(distill, known_waste.name)
    fresh = tmp_path / "fresh-store"
    by_layout = analyze_json(distill, f"oci-layout://{known_waste.layout}:{known_waste.ref}",
                             root=fresh)
    assert by_layout["image"] == f"oci-layout://{known_waste.layout}:{known_waste.ref}"
    ours = tmp_path / "distill-docker.tar"
    ctx = tmp_path / "ctx"
    write_context(ctx, WASTE_DOCKERFILE)
    assert build(distill, ctx, known_waste.name, "--output",
                 f"type=docker,dest={ours}") == known_waste.digest
    by_our_archive = analyze_json(distill, f"docker-archive://{ours}", root=fresh)
    for doc in (by_layout, by_our_archive):
        assert doc["digest"] == by_name["digest"] == known_waste.digest
        assert doc["size"] == by_name["size"]
        assert numbers(doc) == numbers(by_name)

    theirs = tmp_path / "skopeo-docker.tar"
    skopeo_copy(f"oci:{known_waste.layout}:{known_waste.ref}",
                f"docker-archive:{theirs}:analyze-waste:skopeo")
    by_skopeo = analyze_json(distill, f"docker-archive://{theirs}",
                             root=tmp_path / "another-store")
    assert numbers(by_skopeo) == numbers(by_name)
    assert by_skopeo["size"]["compressed"] == by_skopeo["size"]["uncompressed"]


def test_registry_reference_with_an_empty_store(
        distill: RunDistill, known_waste: Built, registry_http: RegistryServer,
        tmp_path: Path) -> None:
    """Pushed to a registry, then analysed by its reference from a new empty store:
    pulled, and the same image and figures."""
    ref = registry_http.ref(f"{unique_repo('analyze')}:1")
    ctx = write_context(tmp_path / "ctx", WASTE_DOCKERFILE)
    assert build(distill, ctx, ref, "--output",
                 f"type=image,name={ref},push=true") == known_waste.digest
    empty = tmp_path / "empty-store"
    proc = distill("analyze", "--json", "--top", "1000", ref, root=empty)
    no_traceback(proc)
    doc = json.loads(proc.stdout)
    by_name = analyze_json(distill, known_waste.name)
    assert doc["image"] == ref
    assert doc["digest"] == known_waste.digest
    assert doc["size"] == by_name["size"]
    assert numbers(doc) == numbers(by_name)


# -- 6. bad input ---------------------------------------------------------------------------

def assert_clean_error(proc: subprocess.CompletedProcess[str], code: int,
                       *says: str) -> None:
    no_traceback(proc)
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors, proc.stderr
    for text in says:
        assert text in proc.stderr, proc.stderr


def test_missing_images_are_clean_errors(distill: RunDistill, registry_http: RegistryServer,
                                         tmp_path: Path) -> None:
    """Not in the store and not in the registry; a registry that does not answer."""
    missing = registry_http.ref(f"{unique_repo('analyze-missing')}:1")
    assert_clean_error(distill("analyze", missing, check=False, root=tmp_path / "s"), 1,
                       "not found", missing)
    assert_clean_error(distill("analyze", "127.0.0.1:1/analyze/none:1", check=False,
                               root=tmp_path / "s"), 1, "cannot contact")


@pytest.mark.parametrize(("spec", "code", "says"), [
    ("oci-layout:///nonexistent", 2, "/nonexistent is not a directory"),
    ("oci-layout://{tmp}", 1, "no index.json"),
    ("docker-archive://{tmp}/none.tar", 2, "no such file"),
    ("ftp://example.invalid/image", 2, "unsupported image source"),
    ("gopher://x", 2, "unsupported image source"),
    ("docker-archive:{tmp}/app.tar", 2, "docker-archive://FILE"),   # skopeo's spelling
    ("oci:{tmp}/layout:1", 2, "oci-layout://PATH"),
])
def test_bad_sources(distill: RunDistill, tmp_path: Path, spec: str, code: int,
                     says: str) -> None:
    """A layout that is not there or not a layout, an archive that is not there: clear
    errors; an unknown scheme: a usage error (exit 2)."""
    proc = distill("analyze", spec.format(tmp=tmp_path), check=False,
                   root=tmp_path / "store")
    assert_clean_error(proc, code, says)


@pytest.mark.parametrize("flag", ["--html", "-o"])
def test_unwritable_report_path(distill: RunDistill, lean: str, tmp_path: Path,
                                flag: str) -> None:
    """A report to a path that cannot be written (its parent is a file; root ignores
    permission bits): a clean error naming the path."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    dest = blocker / "report.out"
    extra = ["--json"] if flag == "-o" else []
    proc = distill("analyze", *extra, flag, str(dest), lean, check=False)
    assert_clean_error(proc, 1, "could not write the report" if flag == "--html"
                       else "could not write the output", str(dest))
    assert blocker.read_text() == "not a directory\n"


def test_negative_top_is_a_usage_error(distill: RunDistill, lean: str) -> None:
    assert_clean_error(distill("analyze", "--top", "-1", lean, check=False), 2, "--top")


def test_flags_that_would_be_ignored_are_usage_errors(distill: RunDistill, lean: str) -> None:
    """-o with nothing to write into it, --sbom with --json: said, not silently dropped
    (a new user found both ignored)."""
    assert_clean_error(distill("analyze", "-o", "/tmp/x", lean, check=False), 2, "-o")
    assert_clean_error(distill("analyze", "--json", "--sbom", "spdx", lean, check=False),
                       2, "--sbom and --json")


def test_ci_results_go_to_stderr_beside_a_document(distill: RunDistill,
                                                   known_waste: Built) -> None:
    """--sbom or --json with --ci: stdout is the document alone, the checks are on stderr
    (a CI log says why the job failed)."""
    for doc in (["--json"], ["--sbom", "spdx"]):
        proc = distill("analyze", *doc, "--ci", known_waste.name, check=False)
        assert proc.returncode == 1
        json.loads(proc.stdout)
        assert "FAIL: min-efficiency" in proc.stderr and "Result: FAIL" in proc.stderr


def test_limits_that_read_alike_show_their_bytes(distill: RunDistill, known_waste: Built
                                                 ) -> None:
    size = json.loads(distill("analyze", "--json", known_waste.name).stdout)["size"]
    limit = size["uncompressed"] - 1
    proc = distill("analyze", "--max-size", str(limit), known_waste.name, check=False)
    assert proc.returncode == 1
    assert f"({size['uncompressed']} bytes), limit" in proc.stdout, proc.stdout


@pytest.fixture
def hostile_layout(busybox_tar: Path, tmp_path: Path) -> tuple[Path, str]:
    """busybox, then a layer with ``../../../../tmp/evil-X``, an absolute ``/abs-evil-X``
    and ``etc -> /`` followed by ``etc/evil-X``, then a layer with ``etc/evil2-X``."""
    token = f"evil-{uuid.uuid4().hex[:12]}"
    plain = busybox_tar.read_bytes()
    layer1 = tar(f(f"../../../../tmp/{token}", b"escaped\n"), f(f"/abs-{token}", b"abs\n"),
                 sym("etc", "/"), f(f"etc/{token}", b"through the link\n"))
    layer2 = tar(f(f"etc/evil2-{token}", b"through the link, later\n"))
    Layout(tmp_path / "hostile", [(gzip.compress(plain, mtime=0), sha256(plain)),
                                  (layer1, sha256(layer1)),
                                  (layer2, sha256(layer2))]).save()
    return tmp_path / "hostile", token


def outside_paths(token: str) -> list[Path]:
    """Where a layer that is written out instead of read would land."""
    return [Path("/tmp") / token, Path("/") / token, Path("/etc") / token,
            Path("/") / f"abs-{token}", Path("/") / f"evil2-{token}",
            Path("/etc") / f"evil2-{token}", Path("/tmp") / f"abs-{token}"]


def files_named(root: Path, token: str) -> list[Path]:
    return [p for p in root.rglob("*") if token in p.name]


def test_hostile_layer_is_read_never_written(distill: RunDistill, tmp_path: Path,
                                             hostile_layout: tuple[Path, str]) -> None:
    """Analyzing a layer that climbs out with ``..`` and through ``etc -> /`` writes
    nothing anywhere (not outside, not in the store), shows its paths cleaned, and
    prints no traceback."""
    layout, token = hostile_layout
    store = tmp_path / "store"
    spec = f"oci-layout://{layout}:latest"
    proc = distill("analyze", "--json", "--top", "1000", spec, root=store, check=False)
    no_traceback(proc)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    text = distill("analyze", "--top", "1000", spec, root=store)
    html = tmp_path / "report.html"
    distill("analyze", "--html", str(html), spec, root=store)
    for path in outside_paths(token):
        assert not path.exists() and not path.is_symlink(), f"{path} was written"
    assert files_named(store, token) == [] and files_named(tmp_path / "hostile", token) == []

    shown = {e["path"] for e in doc["largest"]} | {w["path"] for w in doc["wasted"]}
    nodes = tree_nodes(doc["tree"])
    assert f"/tmp/{token}" in shown and f"/abs-{token}" in shown
    assert f"tmp/{token}" in nodes and f"abs-{token}" in nodes
    assert nodes["etc"]["kind"] == "symlink" and nodes["etc"]["link"] == "/"
    for path in [*shown, *nodes]:
        assert ".." not in path.split("/") and "//" not in path, path
    assert ".." not in text.stdout and f"/tmp/{token}" in text.stdout
    assert "Traceback" not in text.stderr


def test_hostile_layer_paths_are_where_a_runtime_puts_them(
        distill: RunDistill, tmp_path: Path, hostile_layout: tuple[Path, str]) -> None:
    """The same hostile image, analyze against umoci (which confines every member to the
    root, resolving etc -> / inside it)."""
    layout, token = hostile_layout
    doc = analyze_json(distill, f"oci-layout://{layout}:latest", root=tmp_path / "store")
    try:
        assert doc["tree"]["size"] == sum(c["size"] for c in doc["tree"]["children"])
        assert_agrees_with_umoci(doc, layout, "latest", tmp_path)
    finally:
        for path in outside_paths(token):
            assert not path.exists() and not path.is_symlink(), f"{path} was written"


# -- 7. HTML ---------------------------------------------------------------------------------

def test_html_report(distill: RunDistill, known_waste: Built, tmp_path: Path) -> None:
    """--html FILE: one page with the image's name, SVG treemap, its top directories
    and the wasted paths; the text report still goes to stdout."""
    page = tmp_path / "report.html"
    proc = distill("analyze", "--html", str(page), known_waste.name)
    assert known_waste.digest in proc.stdout
    text = page.read_text()
    assert "<svg" in text
    assert known_waste.name in text
    assert 'data-path="/bin"' in text
    for path in WASTE:
        assert path in text

