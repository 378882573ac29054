"""The Kubernetes and CI examples (examples/kubernetes, examples/ci) hold what
docs/scale-out.md says they hold.

PyYAML is not one of the project's dependencies, so the files are checked as text: YAML
that a parser would refuse in the ways a hand edit breaks it (tabs, odd indentation,
unbalanced flow collections or quotes) fails here, and so does a missing key field. The
``yq`` command (a jq wrapper for YAML, Debian package yq, in make's apt packages) also
parses them for real.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

JOB = REPO / "examples" / "kubernetes" / "distill-job.yaml"
ROOTLESS_JOB = REPO / "examples" / "kubernetes" / "distill-job-rootless.yaml"
GITHUB = REPO / "examples" / "ci" / "github-actions.yml"
GITLAB = REPO / "examples" / "ci" / "gitlab-ci.yml"
DOC = REPO / "docs" / "scale-out.md"
FILES = (JOB, ROOTLESS_JOB, GITHUB, GITLAB)


def content_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the lines that are neither blank nor only a comment, block
    scalars' bodies included."""
    return [(n, line) for n, line in enumerate(path.read_text().splitlines(), 1)
            if line.strip() and not line.lstrip().startswith("#")]


def documents(path: Path) -> list[str]:
    return [d for d in re.split(r"^---\s*$", path.read_text(), flags=re.MULTILINE)
            if d.strip()]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_yaml_is_well_formed_text(path: Path) -> None:
    text = path.read_text()
    assert text.endswith("\n")
    assert "\t" not in text, "YAML forbids tabs in indentation"
    block_indent: int | None = None       # inside a `key: |` block scalar
    depth = 0                             # open [ and { of a flow collection
    for n, line in content_lines(path):
        indent = len(line) - len(line.lstrip(" "))
        if block_indent is not None:
            if indent >= block_indent:
                continue
            block_indent = None
        assert indent % 2 == 0, f"{path.name}:{n}: odd indentation"
        body = line.strip()
        if re.search(r":\s*[|>][-+]?\s*(#.*)?$", body):
            block_indent = indent + 1
        # flow collections and quotes close on the line they open
        code = re.sub(r"'[^']*'|\"(?:[^\"\\]|\\.)*\"", "", body).split(" #", 1)[0]
        assert "'" not in code and '"' not in code, f"{path.name}:{n}: unbalanced quote"
        depth += code.count("[") + code.count("{") - code.count("]") - code.count("}")
        assert depth >= 0, f"{path.name}:{n}: a flow collection closes that never opened"
        # a flow collection goes on to the next line only after a comma or its opening
        assert depth == 0 or code.endswith((",", "[", "{")), \
            f"{path.name}:{n}: unclosed flow collection"
    assert depth == 0, f"{path.name}: unclosed flow collection at the end"


def test_kubernetes_manifest_has_what_the_doc_describes() -> None:
    kinds = [re.search(r"^kind: (\w+)$", d, re.MULTILINE) for d in documents(JOB)]
    assert [k.group(1) for k in kinds if k] == ["Namespace", "Secret", "ConfigMap", "Job"]
    text = JOB.read_text()
    for needle in (
            "pod-security.kubernetes.io/enforce: privileged",
            "type: kubernetes.io/dockerconfigjson",
            "items: [{key: .dockerconfigjson, path: config.json}]",
            "{name: DOCKER_CONFIG, value: /etc/distill/auth}",
            "registries.toml: |",
            "{name: DISTILL_REGISTRIES, value: /etc/distill/registries/registries.toml}",
            "{name: DISTILL_ROOT, value: /var/lib/distill}",
            "hostUsers: true",
            "runAsUser: 0",
            "privileged: false",
            "add: [SYS_ADMIN]",
            "seccompProfile: {type: Unconfined}",
            "appArmorProfile: {type: Unconfined}",
            "container.apparmor.security.beta.kubernetes.io/distill: unconfined",
            "hostPath: {path: /dev/net/tun, type: CharDevice}",
            "{name: tun, mountPath: /dev/net/tun}",
            "{name: store, mountPath: /var/lib/distill}",
            "emptyDir: {sizeLimit: 30Gi}",
            "--push",
            "--cache-from=type=registry,ref=$(CACHE)",
            "--cache-to=type=registry,ref=$(CACHE),mode=max",
            """'sleep infinity & exec "$@"'""",
    ):
        assert needle in text, needle
    assert not [line for _, line in content_lines(JOB) if "privileged: true" in line]
    assert not re.search(r"drop: \[ALL\]\s*\n(?!.*RuntimeDefault)", text.split(
        "containers:\n", 1)[1]), "the distill container keeps the default capabilities"
    # the registry credentials are valid JSON in Docker's shape
    config = re.search(r"\.dockerconfigjson: \|\n\s+(\{.*\})\n", text)
    assert config is not None
    assert set(json.loads(config.group(1))["auths"]) == {"registry.example.com"}


def test_the_doc_shows_the_manifest_as_it_is() -> None:
    assert f"```yaml\n{JOB.read_text()}```" in DOC.read_text()
    assert f"```yaml\n{ROOTLESS_JOB.read_text()}```" in DOC.read_text()


def test_rootless_job_is_an_ordinary_user_with_no_capability_added() -> None:
    """What tests/integration/test_rootless_container.py tried as docker run flags."""
    text = ROOTLESS_JOB.read_text()
    for needle in ("runAsUser: 1000", "runAsNonRoot: true", "privileged: false",
                   "allowPrivilegeEscalation: true", "seccompProfile: {type: Unconfined}",
                   "appArmorProfile: {type: Unconfined}",
                   "hostPath: {path: /dev/net/tun, type: CharDevice}",
                   "{name: store, mountPath: /home/builder/.local/share/distill}"):
        assert needle in text, needle
    distill = text.split("containers:\n", 1)[1]
    assert "capabilities:" not in distill and "hostUsers" not in text
    assert "runAsUser: 0" not in text


def test_github_workflow_reads_the_cache_and_pushes_from_main() -> None:
    text = GITHUB.read_text()
    assert re.search(r"^on:\n  push:\n    branches: \[main\]\n  pull_request:", text, re.MULTILINE)
    assert re.search(r"^jobs:\n  build:\n    runs-on: ubuntu-24\.04", text, re.MULTILINE)
    assert "packages: write" in text
    assert "distill login ghcr.io" in text and "--password-stdin" in text
    assert '--cache-from "type=registry,ref=$CACHE"' in text
    assert '--cache-to "type=registry,ref=$CACHE,mode=max"' in text
    assert '--tag "$IMAGE" --push' in text
    # the cache is written only by pushes (to main), never by pull requests
    assert re.search(r'if \[ "\$\{\{ github\.event_name \}\}" = push \]; then\n'
                     r'\s+publish=\(--tag "\$IMAGE" --push\n'
                     r'\s+--cache-to ', text)
    assert "kernel.apparmor_restrict_unprivileged_userns=0" in text
    assert "bubblewrap passt" in text


def test_gitlab_job_reads_the_cache_and_pushes() -> None:
    text = GITLAB.read_text()
    assert re.search(r"^build-image:\n  stage: build\n  image:\n    name: ", text, re.MULTILINE)
    assert 'entrypoint: [""]' in text
    assert re.search(r"^variables:\n  DISTILL_ROOT: /var/lib/distill\n", text, re.MULTILINE)
    assert 'distill login "$CI_REGISTRY" -u "$CI_REGISTRY_USER" --password-stdin' in text
    assert '--cache-from "type=registry,ref=$CACHE"' in text
    assert 'set -- --cache-to "type=registry,ref=$CACHE,mode=max"' in text
    assert '--tag "$IMAGE" --push' in text
    assert """unshare --pid --fork --mount-proc -- sh -c 'sleep infinity & exec "$@"'""" in text
    for setting in ('cap_add = ["SYS_ADMIN"]', '"seccomp:unconfined", "apparmor:unconfined"',
                    'devices = ["/dev/net/tun"]'):
        assert setting in text


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_yaml_parses(path: Path) -> None:
    proc = subprocess.run(["yq", "-s", "-c", ".", str(path)], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    docs = json.loads(proc.stdout)
    if path in (JOB, ROOTLESS_JOB):
        job = docs[-1]
        pod = job["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        added = container["securityContext"].get("capabilities", {}).get("add")
        assert added == (["SYS_ADMIN"] if path == JOB else None)
        assert container["args"][:2] == ["distill", "build"]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert set(mounts) == {v["name"] for v in pod["volumes"]}
    elif path == GITHUB:
        assert list(docs[0]["jobs"]) == ["build"]
    else:
        assert "distill build" in docs[0]["build-image"]["script"][1]
