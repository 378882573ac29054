"""distill pull / push / login / logout: the registry verbs, as Docker's CLI spells them."""

from __future__ import annotations

import argparse
import getpass
import sys

from distill.errors import UsageError
from distill.oci.platform import Platform
from distill.oci.reference import normalize_reference
from distill.registry.auth_config import Credentials, remove_credentials, save_credentials
from distill.registry.client import RegistryClient
from distill.registry.hosts import RegistryHosts
from distill.registry.pull import pull
from distill.registry.push import push
from distill.registry.registries import Registries
from distill.store.store import Store


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("pull", help="fetch an image from a registry into the store")
    p.add_argument("ref", metavar="NAME[:TAG|@DIGEST]")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]",
                   help="which image of a multi-platform index (default: this machine's)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image name")
    p.set_defaults(run=run_pull)

    p = sub.add_parser("push", help="send an image from the store to its registry")
    p.add_argument("name", metavar="NAME[:TAG]")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the digest")
    p.set_defaults(run=run_push)

    p = sub.add_parser("login", help="log in to a registry (stored as Docker stores it)")
    p.add_argument("server", nargs="?", default="docker.io", metavar="SERVER")
    p.add_argument("-u", "--username")
    p.add_argument("-p", "--password",
                   help="the password (visible to other users: prefer --password-stdin)")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.set_defaults(run=run_login)

    p = sub.add_parser("logout", help="forget the credentials of a registry")
    p.add_argument("server", nargs="?", default="docker.io", metavar="SERVER")
    p.set_defaults(run=run_logout)


def run_pull(args: argparse.Namespace) -> int:
    ref = normalize_reference(args.ref).with_default_tag()
    platform = Platform.from_flag(args.platform) or Platform.host()
    store = Store()
    log = (lambda line: None) if args.quiet else (
        lambda line: print(line, file=sys.stderr, flush=True))
    with Registries() as registries:
        pulled = pull(store, registries, ref, platform, log=log)
    if not args.quiet:
        print(f"Digest: {pulled.index or pulled.manifest.digest}", file=sys.stderr)
    print(ref.familiar if not args.quiet else str(ref))
    return 0


def run_push(args: argparse.Namespace) -> int:
    """As ``docker push``: the name says where; prints ``TAG: digest: … size: …``."""
    ref = normalize_reference(args.name).with_default_tag()
    store = Store()
    manifest = store.resolve(str(ref))
    log = (lambda line: None) if args.quiet else (
        lambda line: print(line, file=sys.stderr, flush=True))
    with Registries() as registries:
        pushed = push(store, registries, manifest.digest, ref, log=log)
    if args.quiet:
        print(pushed.manifest.digest)
    else:
        print(f"{ref.tag}: digest: {pushed.manifest.digest} size: {pushed.manifest.size}")
    return 0


def registry_host(server: str) -> str:
    """``docker login`` takes a host, a URL or nothing (Docker Hub)."""
    host = server
    for scheme in ("https://", "http://"):
        host = host.removeprefix(scheme)
    host = host.split("/", 1)[0]
    if not host:
        raise UsageError(f"invalid registry {server!r}")
    return {"index.docker.io": "docker.io", "registry-1.docker.io": "docker.io"}.get(host, host)


def run_login(args: argparse.Namespace) -> int:
    host = registry_host(args.server)
    username = args.username
    if args.password_stdin:
        if args.password:
            raise UsageError("--password and --password-stdin are mutually exclusive")
        if not username:
            raise UsageError("--password-stdin needs --username")
        password = sys.stdin.read().rstrip("\r\n")
    else:
        password = args.password or ""
        if not username:
            if not sys.stdin.isatty():
                raise UsageError("no username given", hint="use --username (-u)")
            username = input("Username: ").strip()
        if not password:
            if not sys.stdin.isatty():
                raise UsageError("no password given", hint="use --password-stdin")
            password = getpass.getpass("Password: ")
    if not password:
        raise UsageError("the password must not be empty")
    creds = Credentials(username, password)
    settings = RegistryHosts.load().get(host)
    with RegistryClient(settings, credentials=lambda _host: creds) as client:
        client.check_login()
    path = save_credentials(host, creds)
    print(f"Login Succeeded (credentials in {path})")
    return 0


def run_logout(args: argparse.Namespace) -> int:
    host = registry_host(args.server)
    if remove_credentials(host):
        print(f"Removing login credentials for {host}")
    else:
        print(f"Not logged in to {host}")
    return 0


