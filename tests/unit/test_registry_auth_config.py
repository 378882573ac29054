"""distill.registry.auth_config: Docker's config.json and credential helpers, as docker/cli."""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from distill.errors import DistillError
from distill.registry.auth_config import (
    DOCKER_HUB_SERVER,
    Credentials,
    config_dir,
    credentials_for,
    remove_credentials,
    save_credentials,
)

# A credential helper speaking docker-credential-helpers' protocol over a JSON file; every
# call is logged as [helper, action, stdin].
FAKE_HELPER = """#!{python}
import json, pathlib, sys
here = pathlib.Path(__file__).parent
db_path = here / "{name}.db"
action, data = sys.argv[1], sys.stdin.read()
with open(here / "calls.log", "a") as log:
    log.write(json.dumps(["{name}", action, data]) + "\\n")
db = json.loads(db_path.read_text()) if db_path.exists() else {{}}
if action == "store":
    creds = json.loads(data)
    db[creds["ServerURL"]] = [creds["Username"], creds["Secret"]]
elif data not in db:
    print("credentials not found in native keychain")
    sys.exit(1)
elif action == "get":
    print(json.dumps({{"ServerURL": data, "Username": db[data][0], "Secret": db[data][1]}}))
elif action == "erase":
    del db[data]
db_path.write_text(json.dumps(db))
"""


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private $DOCKER_CONFIG (and $HOME), so the real ~/.docker is never read."""
    directory = tmp_path / "docker-config"
    monkeypatch.setenv("DOCKER_CONFIG", str(directory))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return directory


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "bin"
    directory.mkdir()
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ['PATH']}")
    return directory


def write_config(directory: Path, data: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def script(bin_dir: Path, name: str, text: str) -> Path:
    path = bin_dir / f"docker-credential-{name}"
    path.write_text(text)
    path.chmod(0o755)
    return path


def helper(bin_dir: Path, name: str = "test", db: dict[str, list[str]] | None = None) -> None:
    script(bin_dir, name, FAKE_HELPER.format(python=sys.executable, name=name))
    if db is not None:
        (bin_dir / f"{name}.db").write_text(json.dumps(db))


def calls(bin_dir: Path) -> list[list[str]]:
    log = bin_dir / "calls.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_no_config_file_means_no_credentials(cfg: Path) -> None:
    assert credentials_for("ghcr.io") is None
    assert remove_credentials("ghcr.io") is False
    assert not cfg.exists()                       # nothing is created to say "nothing"


def test_config_dir_is_docker_config_else_home(cfg: Path, monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    assert config_dir() == cfg
    monkeypatch.delenv("DOCKER_CONFIG")
    assert config_dir() == tmp_path / "home" / ".docker"
    write_config(tmp_path / "home" / ".docker",
                 {"auths": {"ghcr.io": {"auth": _b64("home:pw")}}})
    assert credentials_for("ghcr.io") == Credentials("home", "pw")


def test_auth_field_and_username_password_fields(cfg: Path) -> None:
    write_config(cfg, {"auths": {
        "ghcr.io": {"auth": _b64("alice:s3:cret")},       # the password keeps its colons
        "quay.io": {"username": "bob", "password": "pw"},
        "both.example": {"auth": _b64("from-auth:a"), "username": "field", "password": "f"},
        "empty.example": {},
        "null.example": None,
    }})
    assert credentials_for("ghcr.io") == Credentials("alice", "s3:cret")
    assert credentials_for("quay.io") == Credentials("bob", "pw")
    assert credentials_for("both.example") == Credentials("from-auth", "a")
    assert credentials_for("empty.example") is None
    assert credentials_for("null.example") is None
    assert credentials_for("other.example") is None


@pytest.mark.parametrize("key", [
    "registry.example:5000", "https://registry.example:5000", "http://registry.example:5000",
    "https://registry.example:5000/v2/", "registry.example:5000/v1/",
    "https://user@registry.example:5000/",
])
def test_keys_match_with_scheme_and_path_stripped(cfg: Path, key: str) -> None:
    write_config(cfg, {"auths": {key: {"auth": _b64("u:p")}}})
    assert credentials_for("registry.example:5000") == Credentials("u", "p")
    assert credentials_for("registry.example") is None
    assert credentials_for("registry.example:5001") is None


def test_an_exact_key_wins_over_variants(cfg: Path) -> None:
    write_config(cfg, {"auths": {"https://localhost:5000": {"auth": _b64("legacy:1")},
                                 "localhost:5000": {"auth": _b64("exact:2")}}})
    assert credentials_for("localhost:5000") == Credentials("exact", "2")
    assert remove_credentials("localhost:5000") is True      # logout removes both
    assert credentials_for("localhost:5000") is None


def test_an_exact_key_without_credentials_still_wins(cfg: Path) -> None:
    write_config(cfg, {"auths": {"https://localhost:5000": {"auth": _b64("legacy:1")},
                                 "localhost:5000": {}}})
    assert credentials_for("localhost:5000") is None


def test_ipv6_hosts(cfg: Path) -> None:
    write_config(cfg, {"auths": {"https://[::1]:5000/v2/": {"auth": _b64("six:p")}}})
    assert credentials_for("[::1]:5000") == Credentials("six", "p")


@pytest.mark.parametrize("registry", ["docker.io", "index.docker.io", "registry-1.docker.io",
                                      DOCKER_HUB_SERVER])
@pytest.mark.parametrize("key", [DOCKER_HUB_SERVER, "docker.io", "https://index.docker.io/v2/"])
def test_docker_hub_aliases(cfg: Path, registry: str, key: str) -> None:
    write_config(cfg, {"auths": {key: {"auth": _b64("hub:pw")}}})
    assert credentials_for(registry) == Credentials("hub", "pw")


def test_identity_tokens(cfg: Path) -> None:
    write_config(cfg, {"auths": {
        "acr.example": {"auth": _b64("00000000-0000-0000-0000-000000000000:"),
                        "identitytoken": "refresh-me"},
        "token-only.example": {"identitytoken": "t", "registrytoken": "ignored"},
    }})
    assert credentials_for("acr.example") == Credentials(
        "00000000-0000-0000-0000-000000000000", identity_token="refresh-me")
    assert credentials_for("token-only.example") == Credentials("", identity_token="t")


def test_repr_hides_secrets() -> None:
    creds = Credentials("alice", "hunter2", "tok3n")
    assert "hunter2" not in repr(creds) and "tok3n" not in repr(creds)
    assert "alice" in repr(creds) and "hunter2" not in str(creds)
    assert repr(Credentials("bob")) == "Credentials(username='bob')"


def test_cred_helpers_win_over_creds_store_over_auths(cfg: Path, bin_dir: Path) -> None:
    helper(bin_dir, "test", {"ghcr.io": ["from-store", "s"], "quay.io": ["store-q", "q"],
                             DOCKER_HUB_SERVER: ["hub-user", "h"]})
    helper(bin_dir, "other", {"ghcr.io": ["from-helper", "x"]})
    write_config(cfg, {
        "auths": {"ghcr.io": {"auth": _b64("from-file:f")},
                  "quay.io": {"auth": _b64("file-q:f")},
                  "gitlab.example": {"auth": _b64("file-g:g")}},
        "credsStore": "test",
        "credHelpers": {"ghcr.io": "other", "gitlab.example": ""},   # "" = the file itself
    })
    assert credentials_for("ghcr.io") == Credentials("from-helper", "x")
    assert credentials_for("quay.io") == Credentials("store-q", "q")
    assert credentials_for("gitlab.example") == Credentials("file-g", "g")
    assert credentials_for("docker.io") == Credentials("hub-user", "h")
    assert credentials_for("nothing.example") is None          # helper: not found, no error
    assert calls(bin_dir) == [
        ["other", "get", "ghcr.io"], ["test", "get", "quay.io"],
        ["test", "get", DOCKER_HUB_SERVER], ["test", "get", "nothing.example"],
    ]


def test_helper_identity_token(cfg: Path, bin_dir: Path) -> None:
    helper(bin_dir, "test", {"ghcr.io": ["<token>", "refresh"]})
    write_config(cfg, {"credsStore": "test"})
    assert credentials_for("ghcr.io") == Credentials("", identity_token="refresh")


def test_helper_missing(cfg: Path, bin_dir: Path) -> None:
    write_config(cfg, {"credHelpers": {"ghcr.io": "nosuch"}})
    with pytest.raises(DistillError, match="docker-credential-nosuch not found on PATH"):
        credentials_for("ghcr.io")
    assert credentials_for("quay.io") is None              # other hosts need no helper


def test_helper_failure_names_helper_and_first_line(cfg: Path, bin_dir: Path) -> None:
    script(bin_dir, "test", "#!/bin/sh\necho 'keychain is locked' >&2\necho more >&2\nexit 3\n")
    write_config(cfg, {"credsStore": "test"})
    with pytest.raises(DistillError) as info:
        credentials_for("ghcr.io")
    assert info.value.message == ("credential helper docker-credential-test get failed "
                                  "(exit status 3): keychain is locked")


def test_helper_protocol_errors_on_stdout_are_reported(cfg: Path, bin_dir: Path) -> None:
    script(bin_dir, "test", "#!/bin/sh\necho 'error getting credentials'\nexit 1\n")
    write_config(cfg, {"credsStore": "test"})
    with pytest.raises(DistillError, match=r"get failed \(exit status 1\): error getting"):
        credentials_for("ghcr.io")


def test_helper_failures_never_show_secrets(cfg: Path, bin_dir: Path) -> None:
    # store: echoes its stdin (the secret) to stderr and fails
    script(bin_dir, "test", "#!/bin/sh\necho \"cannot store $(cat)\" >&2\nexit 1\n")
    write_config(cfg, {"credsStore": "test"})
    with pytest.raises(DistillError) as info:
        save_credentials("ghcr.io", Credentials("alice", "hunter2"))
    assert "hunter2" not in str(info.value) and "<hidden>" in info.value.message
    # get: prints credentials JSON but fails; the reply is not quoted
    script(bin_dir, "test", "#!/bin/sh\necho '{\"Username\":\"a\",\"Secret\":\"hunter2\"}'\n"
                            "exit 1\n")
    with pytest.raises(DistillError) as info:
        credentials_for("ghcr.io")
    assert "hunter2" not in str(info.value)
    # get: exit 0 with a malformed reply
    script(bin_dir, "test", "#!/bin/sh\necho '[\"hunter2\"]'\n")
    with pytest.raises(DistillError, match="other than JSON") as info:
        credentials_for("ghcr.io")
    assert "hunter2" not in str(info.value)


def test_secrets_never_reach_a_command_line(cfg: Path, bin_dir: Path) -> None:
    script(bin_dir, "test", '#!/bin/sh\necho "$*" >> "$(dirname "$0")/argv.log"\ncat >/dev/null\n')
    write_config(cfg, {"credsStore": "test"})
    save_credentials("ghcr.io", Credentials("alice", "hunter2"))
    assert (bin_dir / "argv.log").read_text() == "store\n"


@pytest.mark.parametrize(("text", "message"), [
    ("{", "not valid JSON: Expecting property name enclosed in double quotes at line 1"),
    ("[]", "the top level must be an object, not an array"),
    ('{"auths": []}', "auths must be an object, not an array"),
    ('{"auths": {"ghcr.io": "x"}}', 'auths["ghcr.io"] must be an object, not a string'),
    ('{"auths": {"ghcr.io": {"auth": 5}}}', 'auths["ghcr.io"].auth must be a string, not a'),
    ('{"auths": {"ghcr.io": {"password": true}}}', "password must be a string, not a boolean"),
    ('{"credsStore": {}}', "credsStore must be a string, not an object"),
    ('{"credHelpers": {"ghcr.io": 1}}', 'credHelpers["ghcr.io"] must be a string'),
    ('{"auths": {"ghcr.io": {"auth": "not base64!"}}}', ".auth is not base64"),
    (json.dumps({"auths": {"ghcr.io": {"auth": _b64("nocolon")}}}), "does not decode to"),
    (json.dumps({"auths": {"ghcr.io": {"auth": _b64(":pw")}}}), "does not decode to"),
])
def test_malformed_config_is_a_clear_error(cfg: Path, text: str, message: str) -> None:
    path = write_config(cfg, text)
    for call in (lambda: credentials_for("quay.io"),
                 lambda: save_credentials("quay.io", Credentials("u", "p")),
                 lambda: remove_credentials("quay.io")):
        with pytest.raises(DistillError) as info:
            call()
        assert info.value.message.startswith(f"{path}: ")
        assert message in info.value.message
    assert path.read_text() == text                         # never overwritten


def test_bad_base64_error_does_not_show_the_value(cfg: Path) -> None:
    write_config(cfg, {"auths": {"ghcr.io": {"auth": "c2VjcmV0LXBhc3N3b3Jk!"}}})
    with pytest.raises(DistillError) as info:
        credentials_for("ghcr.io")
    assert "c2VjcmV0" not in str(info.value)


def test_empty_file_and_nulls_are_no_credentials(cfg: Path) -> None:
    write_config(cfg, "  \n")
    assert credentials_for("ghcr.io") is None
    write_config(cfg, {"auths": None, "credsStore": None, "credHelpers": None})
    assert credentials_for("ghcr.io") is None


def test_save_and_remove_round_trip_in_the_file(cfg: Path) -> None:
    other: dict[str, Any] = {"psFormat": "table {{.ID}}", "proxies": {"default": {"httpProxy": "http://p"}},
             "auths": {"quay.io": {"auth": _b64("q:q"), "email": "kept@example"}}}
    path = write_config(cfg, other)
    path.chmod(0o644)
    assert save_credentials("ghcr.io", Credentials("alice", "pw")) == path
    data = json.loads(path.read_text())
    assert data["auths"]["ghcr.io"] == {"auth": _b64("alice:pw")}
    assert {k: v for k, v in data.items() if k != "auths"} == {
        k: v for k, v in other.items() if k != "auths"}
    assert data["auths"]["quay.io"] == other["auths"]["quay.io"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(os.listdir(cfg)) == ["config.json"]         # no temp file left behind
    assert credentials_for("ghcr.io") == Credentials("alice", "pw")

    assert save_credentials("docker.io", Credentials("hub", "tok", "idtoken")) == path
    assert json.loads(path.read_text())["auths"][DOCKER_HUB_SERVER] == {
        "auth": _b64("hub:tok"), "identitytoken": "idtoken"}
    assert credentials_for("registry-1.docker.io") == Credentials("hub", "tok", "idtoken")

    assert remove_credentials("ghcr.io") is True
    assert remove_credentials("ghcr.io") is False
    assert remove_credentials("index.docker.io") is True
    data = json.loads(path.read_text())
    assert data["auths"] == {"quay.io": other["auths"]["quay.io"]}
    assert data["psFormat"] == other["psFormat"]


def test_save_creates_the_directory_private(cfg: Path) -> None:
    path = save_credentials("localhost:5000", Credentials("u", "p"))
    assert path == cfg / "config.json"
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"auths": {"localhost:5000": {"auth": _b64("u:p")}}}


def test_save_through_a_symlinked_config_replaces_the_target(cfg: Path, tmp_path: Path) -> None:
    real = write_config(tmp_path / "dotfiles", {"auths": {}})
    cfg.mkdir()
    (cfg / "config.json").symlink_to(real)
    save_credentials("ghcr.io", Credentials("u", "p"))
    assert (cfg / "config.json").is_symlink()
    assert credentials_for("ghcr.io") == Credentials("u", "p")


def test_remove_erases_every_variant_of_the_key(cfg: Path) -> None:
    path = write_config(cfg, {"auths": {"https://ghcr.io": {"auth": _b64("a:1")},
                                        "http://ghcr.io/v2/": {"auth": _b64("b:2")},
                                        "ghcr.io.example": {"auth": _b64("c:3")}}})
    assert remove_credentials("ghcr.io") is True
    assert list(json.loads(path.read_text())["auths"]) == ["ghcr.io.example"]


def test_save_refuses_credentials_docker_could_not_read_back(cfg: Path) -> None:
    for creds in (Credentials("", "pw"), Credentials("a:b", "pw")):
        with pytest.raises(DistillError, match="username"):
            save_credentials("ghcr.io", creds)
    assert not cfg.exists()


def test_save_and_remove_through_a_helper(cfg: Path, bin_dir: Path) -> None:
    helper(bin_dir, "test")
    helper(bin_dir, "other")
    path = write_config(cfg, {"credsStore": "test", "credHelpers": {"quay.io": "other"},
                              "auths": {"ghcr.io": {"auth": _b64("old:plaintext")}},
                              "currentContext": "default"})
    assert save_credentials("ghcr.io", Credentials("alice", "pw")) == path
    assert save_credentials("quay.io", Credentials("bob", "", "idtok")) == path
    assert save_credentials("docker.io", Credentials("hub", "h")) == path
    data = json.loads(path.read_text())
    # as docker login: an empty entry remains in auths, and the plaintext secret is gone
    assert data["auths"] == {"ghcr.io": {}, "quay.io": {}, DOCKER_HUB_SERVER: {}}
    assert data["currentContext"] == "default"
    assert "pw" not in path.read_text() and "idtok" not in path.read_text()
    stored = [[name, action, json.loads(stdin)] for name, action, stdin in calls(bin_dir)]
    assert stored == [
        ["test", "store", {"ServerURL": "ghcr.io", "Username": "alice", "Secret": "pw"}],
        ["other", "store", {"ServerURL": "quay.io", "Username": "<token>", "Secret": "idtok"}],
        ["test", "store", {"ServerURL": DOCKER_HUB_SERVER, "Username": "hub", "Secret": "h"}],
    ]
    assert credentials_for("ghcr.io") == Credentials("alice", "pw")
    assert credentials_for("quay.io") == Credentials("", identity_token="idtok")

    (bin_dir / "calls.log").unlink()
    assert remove_credentials("ghcr.io") is True
    assert remove_credentials("ghcr.io") is False
    assert remove_credentials("docker.io") is True
    assert calls(bin_dir) == [["test", "get", "ghcr.io"], ["test", "erase", "ghcr.io"],
                              ["test", "get", "ghcr.io"],
                              ["test", "get", DOCKER_HUB_SERVER],
                              ["test", "erase", DOCKER_HUB_SERVER]]
    assert json.loads(path.read_text())["auths"] == {"quay.io": {}}
    assert json.loads((bin_dir / "test.db").read_text()) == {}


def test_helper_timeout(cfg: Path, bin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from distill.registry import auth_config
    monkeypatch.setattr(auth_config, "HELPER_TIMEOUT", 0.5)
    script(bin_dir, "test", "#!/bin/sh\nexec sleep 30\n")
    write_config(cfg, {"credsStore": "test"})
    with pytest.raises(DistillError, match="did not answer 'get' within 0.5 s"):
        credentials_for("ghcr.io")
