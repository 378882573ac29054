"""Attack: an OCI layout whose config blob, named by the digest the manifest gives, was
rewritten after the fact: same size, ``Env`` changed (a config that lies about its own
digest).

Expect: a clear error naming the layout, "content hashes to … expected".

Why: the config decides the image's user, entrypoint and diff_ids; it is trusted only
as far as its digest, which the manifest (itself hashed) vouches for.
"""
import json

from tests.hostile.harness import Case, Hostile, f, tar


def setup(h: Hostile) -> None:
    lay = h.layout(tar(f("a", b"a\n")))
    path = lay.blob_path(lay.manifest["config"]["digest"])
    honest = path.read_bytes()
    config = json.loads(honest)
    config["config"]["Env"] = ["PATH=/evil/bin:/usr/bin:/bin"]
    evil = json.dumps(config).encode()
    evil = evil[:len(honest)].ljust(len(honest), b" ") if len(evil) > len(honest) \
        else evil.ljust(len(honest), b" ")
    path.write_bytes(evil)
    h.dockerfile("FROM base\nRUN true\n")


CASE = Case(attack="layout: the config blob's bytes are not its digest",
            outcome="refused: `content hashes to sha256:…, expected sha256:…`",
            setup=setup, error="content hashes to")
