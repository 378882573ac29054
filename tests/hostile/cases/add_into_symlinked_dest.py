"""Attack: a base layer holds ``/target -> <canary>`` (an absolute symlink to the host's
canary) and the Dockerfile runs ``ADD evil.tar /target/``: the destination itself is
the link.

Expect: the build succeeds; the destination resolves inside the image's root
(``<canary>`` in the image), where the archive's ``pwned`` lands; the host's canary is
untouched.

Why: the destination of COPY/ADD is a path of the image: a base image's symlinks are
followed as if chrooted (BuildKit's containerd FollowSymlinkInScope).
"""
from tests.hostile.harness import Case, Hostile, f, sym, tar


def setup(h: Hostile) -> None:
    h.layout(tar(sym("target", str(h.canary))))
    h.file("evil.tar", tar(f("pwned", b"pwned\n"), f("secret", b"replaced\n")))
    h.dockerfile("FROM base\nADD evil.tar /target/\n")


def check(h: Hostile) -> None:
    inside = h.out / str(h.canary).lstrip("/")
    assert (inside / "pwned").read_bytes() == b"pwned\n"
    assert (inside / "secret").read_bytes() == b"replaced\n"


CASE = Case(attack="base layer `/target -> <canary>`, `ADD evil.tar /target/`",
            outcome="builds; the destination resolves inside the image",
            setup=setup, check=check)
