"""Attack: an OCI layout whose config lists one diff_id for a manifest of two layers
(the second layer would be unpacked with no diff_id to check it against, or the image
would be read as the first layer alone).

Expect: a clear error naming the layout, "lists 2 layers but its config has 1 diff_ids".

Why: layers and diff_ids are paired by position; unequal counts are no image.
"""
from tests.hostile.harness import Case, Hostile, f, tar


def setup(h: Hostile) -> None:
    lay = h.layout(tar(f("a", b"a\n")), save=False)
    lay.config["rootfs"]["diff_ids"].pop()
    lay.save()
    h.dockerfile("FROM base\nRUN true\n")


CASE = Case(attack="layout: 2 layers, 1 diff_id",
            outcome="refused: `lists 2 layers but its config has 1 diff_ids`",
            setup=setup, error="lists 2 layers but its config has 1 diff_ids")
