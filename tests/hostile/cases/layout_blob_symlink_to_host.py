"""Attack: an OCI layout whose layer blob is a symlink to the canary's secret, listed
under the secret's true digest and size (an attacker who can guess a host file's
content could check it, or put a host file into the image).

Expect: a clear error naming the layout, "is a symbolic link".

Why: a layout is read inside its own directory (openat2 RESOLVE_IN_ROOT, no symlinks):
no blob may come from a host path.
"""
from tests.hostile.harness import SECRET, Case, Hostile, f, sha256, tar


def setup(h: Hostile) -> None:
    lay = h.layout(tar(f("a", b"a\n")), save=False)
    digest = sha256(SECRET)
    lay.blob_path(digest).symlink_to(h.canary / "secret")
    lay.manifest["layers"][1].update(digest=digest, size=len(SECRET))
    lay.config["rootfs"]["diff_ids"][1] = digest
    lay.save()
    h.dockerfile("FROM base\nRUN true\n")


CASE = Case(attack="layout: a layer blob that is a symlink to a host file (true digest)",
            outcome="refused: `is a symbolic link`",
            setup=setup, error="is a symbolic link")
