"""The upper directory a step leaves becomes its layer's snapshot, which a later build
reuses when its own layer hashes the same: it must hold no more than the layer does.
Found by the rootless review: a socket and an attribute a RUN set under an overlayfs
name (stored escaped, as ``user.overlay.overlay.*``) stayed in the snapshot, unseen by
the layer's hash, and showed up in another build's later RUN steps."""

from __future__ import annotations

import io
import os
import socket
import tarfile
from pathlib import Path

from distill.sandbox import xattrs
from distill.sandbox.layers import write_layer_from_upper


def test_what_the_layer_leaves_out_leaves_the_snapshot(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    upper.mkdir()
    (upper / "greeting").write_text("hello\n")
    os.setxattr(upper / "greeting", "user.overlay.overlay.note", b"hostile")
    os.setxattr(upper / "greeting", "user.kept", b"1")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(upper / "evil.sock"))
    out = io.BytesIO()
    write_layer_from_upper(upper, out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        (member,) = tar.getmembers()
    assert member.name == "greeting"
    assert {k for k in member.pax_headers if k.startswith("SCHILY.xattr.")} == \
        {"SCHILY.xattr.user.kept"}
    # the snapshot is what the layer says
    assert sorted(os.listdir(upper)) == ["greeting"]
    assert os.listxattr(upper / "greeting") == ["user.kept"]


def test_an_attribute_name_no_kernel_can_hold_is_not_carried() -> None:
    """A PAX record ``SCHILY.xattr.user.a<NUL>b``: setxattr would raise ValueError (a
    traceback, found by the rootless review); it is dropped as not carried."""
    member = tarfile.TarInfo("f")
    member.pax_headers = {"SCHILY.xattr.user.a\0b": "v", "SCHILY.xattr.user.ok": "1"}
    assert xattrs.of_member(member) == {"user.ok": b"1"}
    assert not xattrs.carried("user.a\0b")
