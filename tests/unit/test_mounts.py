"""RUN --mount / --network values as BuildKit reads them, and build secrets as buildx takes them."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from distill.builder.secrets import MAX_SECRET_SIZE, SecretStore, parse_ssh_specs
from distill.dockerfile.mounts import (
    Mount,
    clean,
    csv_fields,
    mount_from,
    parse_mount,
    parse_network,
    ram_in_bytes,
    ssh_target,
    suggestion,
)
from distill.errors import DockerfileError, ShellExpansionError, UsageError
from distill.gopath import basename


def same(word: str) -> str:
    return word


def parse(value: str) -> Mount:
    return parse_mount(value, same)


# -- defaults per type -------------------------------------------------------------------

def test_bind_defaults() -> None:
    assert parse("target=/src") == Mount(type="bind", target="/src", readonly=True)
    m = parse("type=bind,source=app,from=builder,dst=/a,rw")
    assert (m.source, m.from_, m.target, m.readonly) == ("app", "builder", "/a", False)
    assert parse("type=bind,target=/a,readwrite=true").readonly is False
    assert parse("type=bind,target=/a,rw=false").readonly is True
    assert parse("type=bind,target=/a,ro=false").readonly is False
    assert parse("type=bind,src=x,destination=/d").target == "/d"


def test_cache_defaults() -> None:
    m = parse("type=cache,target=/root/.cache")
    assert (m.id, m.sharing, m.readonly, m.mode, m.uid, m.gid) == (
        "/root/.cache", "shared", False, None, None, None)
    assert parse("type=cache,target=c/../d/").id == "d"  # path.Clean of the target
    m = parse("type=cache,target=/c,id=go,sharing=LOCKED,mode=0700,uid=1000,gid=50,ro")
    assert (m.id, m.sharing, m.mode, m.uid, m.gid, m.readonly) == (
        "go", "locked", 0o700, 1000, 50, True)
    m = parse("type=cache,target=/c,from=base,source=/deps,sharing=private")
    assert (m.from_, m.source, m.sharing) == ("base", "/deps", "private")


def test_tmpfs_defaults_and_size() -> None:
    m = parse("type=tmpfs,target=/t")
    assert (m.readonly, m.size) == (False, 0)
    assert parse("type=tmpfs,target=/t,size=64m").size == 64 << 20
    assert parse("type=tmpfs,target=/t,size=1.5k").size == 1536
    assert parse("type=tmpfs,target=/t,size=1024").size == 1024
    assert parse("type=tmpfs,target=/t,size=2GiB").size == 2 << 30
    assert parse("type=tmpfs,target=/t,size=10 kb").size == 10240


def test_secret_defaults() -> None:
    m = parse("type=secret,id=aws")
    assert (m.id, m.target, m.readonly, m.required, m.env, m.mode) == (
        "aws", "/run/secrets/aws", True, False, None, None)
    assert parse("type=secret,target=/root/.npmrc").id == ".npmrc"
    m = parse("type=secret,src=legacy")
    assert (m.id, m.target) == ("legacy", "/run/secrets/legacy")
    m = parse("type=secret,id=k,env=API_KEY")  # env only: no file
    assert (m.env, m.target) == ("API_KEY", "")
    m = parse("type=secret,id=k,env=K,target=/k")  # both
    assert (m.env, m.target) == ("K", "/k")
    m = parse("type=secret,id=x,required,mode=0440,uid=1,gid=2")
    assert (m.required, m.mode, m.uid, m.gid) == (True, 0o440, 1, 2)
    assert parse("type=secret,id=x,required=false").required is False
    assert parse("type=secret,id=a/b").target == "/run/secrets/b"


def test_ssh_defaults() -> None:
    m = parse("type=ssh")
    assert (m.id, m.target, m.required) == ("default", "", False)
    assert ssh_target(m, 0) == "/run/buildkit/ssh_agent.0"
    assert ssh_target(m, 2) == "/run/buildkit/ssh_agent.2"
    m = parse("type=ssh,id=gh,target=/agent,required=true,mode=0666,uid=5")
    assert (m.id, ssh_target(m, 0), m.required, m.mode, m.uid) == ("gh", "/agent", True,
                                                                   0o666, 5)


def test_keys_and_bare_words_are_case_insensitive() -> None:
    m = parse("TYPE=Cache,Target=/c,SHARING=Private,RO")
    assert (m.type, m.target, m.sharing, m.readonly) == ("cache", "/c", "private", True)
    assert parse("type=secret,id=a,REQUIRED").required


def test_values_are_expanded_but_from_is_not() -> None:
    env = {"T": "/cache", "ID": "pip"}

    def expand(word: str) -> str:
        for k, v in env.items():
            word = word.replace("$" + k, v)
        return word

    m = parse_mount("type=cache,target=$T,id=$ID", expand)
    assert (m.target, m.id) == ("/cache", "pip")
    with pytest.raises(DockerfileError, match="'from' doesn't support variable expansion"):
        parse_mount("type=bind,target=/x,from=$STAGE", expand)
    assert parse_mount("from=a$,target=/x", expand).from_ == "a$"  # a final '$' is literal

    def failing(word: str) -> str:
        raise ShellExpansionError("bad substitution")

    with pytest.raises(ShellExpansionError):
        parse_mount("target=${x", failing)


def test_csv_quoting() -> None:
    assert parse('"type=bind","target=/a,b"').target == "/a,b"
    assert csv_fields('a,"b,c",d', "x") == ["a", "b,c", "d"]
    assert csv_fields('"a""b",c', "x") == ['a"b', "c"]
    assert csv_fields("a,,b\n", "x") == ["a", "", "b"]
    assert csv_fields('""', "x") == [""]


@pytest.mark.parametrize(("value", "message"), [
    ("", "failed to parse csv mounts: EOF"),
    ('a"b', 'parse error on line 1, column 2: bare " in non-quoted-field'),
    ('"ab', 'column 2: extraneous or missing " in quoted-field'),
    ('"a"b', 'column 3: extraneous or missing " in quoted-field'),
    ('target="/x"""', 'bare " in non-quoted-field'),
])
def test_csv_errors(value: str, message: str) -> None:
    with pytest.raises(DockerfileError, match="failed to parse csv mounts") as e:
        parse(value)
    assert message in e.value.message


# -- validation errors ------------------------------------------------------------------

@pytest.mark.parametrize(("value", "message", "hint"), [
    ("type=bnd", 'unsupported mount type "bnd"', "did you mean bind?"),
    ("type=volume", 'unsupported mount type "volume"', None),
    ("type=cache,target=/c,sharing=lockd", 'unsupported sharing value "lockd"',
     "did you mean locked?"),
    ("target=/x,tagret=/y", "unexpected key 'tagret' in 'tagret=/y'", "did you mean target?"),
    ("target=/x,zzzzzzz=1", "unexpected key 'zzzzzzz' in 'zzzzzzz=1'", None),
    ("target=/x,foo", "invalid field 'foo' must be a key=value pair", None),
    ("required,type=secret,id=x", "unexpected key 'required' for mount type 'bind'", None),
    ("type=cache,target=/c,required=true", "unexpected key 'required' for mount type 'cache'",
     None),
    ("type=bind,target=/c,size=1m", "unexpected key 'size' for mount type 'bind'", None),
    ("type=tmpfs,target=/t,size=lots", "invalid value for size: lots", None),
    ("type=tmpfs,target=/t,size=1.2.3", "invalid value for size: 1.2.3", None),
    ("target=/x,ro=maybe", "invalid value for ro: maybe", None),
    ("target=/x,rw=yes", "invalid value for rw: yes", None),
    ("type=secret,id=x,required=y", "invalid value for required: y", None),
    ("type=cache,target=/c,mode=0999", "invalid value 0999 for mode", None),
    ("type=cache,target=/c,mode=", "invalid value  for mode", None),
    ("type=cache,target=/c,uid=-1", "invalid value -1 for uid", None),
    ("type=cache,target=/c,gid=4294967296", "invalid value 4294967296 for gid", None),
    ("type=cache,target=/c,uid=0x10", "invalid value 0x10 for uid", None),
    ("type=bind,target=/x,mode=0644", 'mode not allowed for "bind" type mounts', None),
    ("type=tmpfs,target=/x,uid=1", 'uid not allowed for "tmpfs" type mounts', None),
    ("type=bind,target=/x,gid=1", 'gid not allowed for "bind" type mounts', None),
    ("type=secret,id=a,from=stage", "secret mount should not have a from", None),
    ("type=secret,id=a,sharing=shared", "secret mount should not define sharing", None),
    ("type=secret", "invalid secret mount. one of source, target required", None),
    ("type=secret,src=a,id=b", "both source and id can't be set", None),
    ("type=tmpfs,target=/t,sharing=locked", "invalid cache sharing set for tmpfs mount", None),
    ("type=ssh,source=/x", "ssh does not support source", None),
    ("type=cache,target=/", 'invalid mount target "/"', None),
    ("target=/a/..", 'invalid mount target "/"', None),
])
def test_validation_errors(value: str, message: str, hint: str | None) -> None:
    with pytest.raises(DockerfileError) as e:
        parse(value)
    assert e.value.message == message
    assert e.value.hint == hint
    assert e.value.location is None  # the caller adds it


def test_from_check_comes_before_everything_else() -> None:
    with pytest.raises(DockerfileError, match="'from' doesn't support"):
        parse("type=nope,from=${stage}")


def test_mount_from_for_planning() -> None:
    assert mount_from("type=cache,target=/c,mode=$M") is None
    assert mount_from("target=/x,FROM=builder,source=$SRC") == "builder"
    assert mount_from("from=a,from=b") == "b"
    with pytest.raises(DockerfileError, match="'from' doesn't support variable expansion"):
        mount_from("from=${stage}")
    with pytest.raises(DockerfileError, match="failed to parse csv mounts"):
        mount_from('from="x')


def test_relative_targets_are_under_the_working_directory() -> None:
    assert parse("target=src").resolved_target("/app") == "/app/src"
    assert parse("target=../x").resolved_target("/app/sub") == "/app/x"
    assert parse("target=/abs/./p/").resolved_target("/app") == "/abs/p"
    assert parse("type=cache,target=").resolved_target("/w") == "/w"
    with pytest.raises(DockerfileError, match='invalid mount target "/"'):
        parse("type=tmpfs,target=").resolved_target("/")
    with pytest.raises(DockerfileError, match='invalid mount target "/"'):
        parse("target=..").resolved_target("/a")


def test_network() -> None:
    assert [parse_network(v) for v in ("default", "none", "host")] == ["default", "none", "host"]
    for bad in ("None", "bridge", ""):
        with pytest.raises(DockerfileError, match=f'invalid network mode "{bad}"'):
            parse_network(bad)


def test_helpers() -> None:
    assert [clean(p) for p in ("", "a/../..", "//a//b/", "/../x", "./")] == [
        ".", "..", "/a/b", "/x", "."]
    assert [basename(p) for p in ("", "/", "a/b/", "c")] == [".", "/", "b", "c"]
    assert ram_in_bytes("3") == 3 and ram_in_bytes("1t") == 1 << 40
    assert suggestion("bind", ["bind"]) is None
    assert suggestion("cahce", ["bind", "cache"]) == "cache"


# -- secrets ----------------------------------------------------------------------------

def test_secret_store_sources(tmp_path: Path) -> None:
    f = tmp_path / "token"
    f.write_bytes(b"from-file\n")
    (tmp_path / "bare").write_bytes(b"bare-file")
    environ = {"FROM_ENV": "env-value", "plain": "plain-env"}
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        store = SecretStore.parse([f"id=a,src={f}", "id=b,env=FROM_ENV", "id=plain", "id=bare",
                                   f"type=file,id=c,source={f}", "type=env,id=d,src=FROM_ENV",
                                   "ID=e,ENV=FROM_ENV"], environ=environ)
    finally:
        os.chdir(old)
    assert store.ids() == ["a", "b", "bare", "c", "d", "e", "plain"]
    assert store.get("a") == b"from-file\n"
    assert store.get("b") == b"env-value"
    assert store.get("plain") == b"plain-env"  # id only: the variable when it is set...
    assert store.get("c") == store.get("a")
    assert store.get("d") == store.get("e") == b"env-value"
    assert store.get("missing") is None and "a" in store and "zz" not in store
    assert "from-file" not in repr(store)


def test_secret_store_reads_lazily(tmp_path: Path) -> None:
    f = tmp_path / "token"
    f.write_bytes(b"hunter2-xyz\n")
    store = SecretStore.parse([f"id=t,src={f}", "id=u,env=U"], environ={"U": "ab"})
    f.write_bytes(b"changed-value\n")  # read on first use, not at parse time
    assert store.get("t") == b"changed-value\n"
    assert store.get("u") == b"ab"


def test_secret_store_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="failed to stat"):
        SecretStore.parse([f"id=x,src={tmp_path}/nope"])
    with pytest.raises(UsageError, match="failed to stat"):
        SecretStore.parse(["id=not-a-variable-nor-file"], environ={})
    big = tmp_path / "big"
    big.write_bytes(b"x" * (MAX_SECRET_SIZE + 1))
    with pytest.raises(UsageError, match="secret big too big. max size 500KB"):
        SecretStore.parse([f"id=big,src={big}"])
    for spec, message in [("src=/etc/hostname", "secret missing ID"),
                          ("id=a,foo=b", "unexpected key 'foo' in 'foo=b'"),
                          ("id=a,type=ssh", 'unsupported secret type "ssh"'),
                          ("id", "invalid field 'id' must be a key=value pair"),
                          ('id="a', "failed to parse csv secret")]:
        with pytest.raises(UsageError) as e:
            SecretStore.parse([spec], environ={})
        assert message in e.value.message


def test_ssh_specs(tmp_path: Path) -> None:
    sock_path = tmp_path / "agent.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock_path))
        env = {"SSH_AUTH_SOCK": str(sock_path)}
        assert parse_ssh_specs(["default"], env) == {"default": str(sock_path)}
        assert parse_ssh_specs([f"gh={sock_path}", "="], env) == {
            "gh": str(sock_path), "default": str(sock_path)}
        with pytest.raises(UsageError, match='duplicate agent ID "default"'):
            parse_ssh_specs(["default", f"default={sock_path}"], env)
        with pytest.raises(UsageError, match="SSH_AUTH_SOCK is not set"):
            parse_ssh_specs(["default"], {})
        key = tmp_path / "id_ed25519"
        key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
        with pytest.raises(UsageError, match="is not an ssh-agent socket"):
            parse_ssh_specs([f"k={key}"], env)
        with pytest.raises(UsageError, match="No such file"):
            parse_ssh_specs([f"k={tmp_path}/gone"], env)
