"""Attack: an OCI layout whose config lists, for its second layer, the diff_id of the
busybox layer (an honest blob, a lying diff_id: the snapshot cache is keyed by diff_id,
so a believed lie would make this layer's files show up as another image's base).

Expect: a clear error naming the layout, "unpacks to".

Why: diff_ids are computed from the bytes while unpacking (as containerd does), never
taken from the config (see also test_security_store.py's victim case).
"""
from tests.hostile.harness import Case, Hostile, f, tar


def setup(h: Hostile) -> None:
    lay = h.layout(tar(f("who", b"attacker\n")), save=False)
    ids = lay.config["rootfs"]["diff_ids"]
    ids[1] = ids[0]
    lay.save()
    h.dockerfile("FROM base\nRUN cat /who\n")


CASE = Case(attack="layout: config gives a layer another layer's diff_id",
            outcome="refused: `… unpacks to sha256:…`",
            setup=setup, error="unpacks to")
