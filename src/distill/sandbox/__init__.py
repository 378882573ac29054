"""The only part of distill that makes mount syscalls or runs processes.

* :mod:`~distill.sandbox.namespace`: a private mount namespace for the process.
* :mod:`~distill.sandbox.overlay`: overlayfs root filesystems over snapshots.
* :mod:`~distill.sandbox.layers`: layer tars <-> overlayfs directories.
* :mod:`~distill.sandbox.run`: RUN steps under bubblewrap.
"""

from __future__ import annotations

from distill.sandbox._rootfs import make_dirs
from distill.sandbox.layers import extract_layer, write_layer_from_upper
from distill.sandbox.namespace import ensure_private_mount_namespace
from distill.sandbox.overlay import OverlayMount, overlay_mount
from distill.sandbox.run import ProcessGroup, RunSpec, run_in_rootfs, sandbox_ids

__all__ = [
    "OverlayMount",
    "ProcessGroup",
    "RunSpec",
    "ensure_private_mount_namespace",
    "extract_layer",
    "make_dirs",
    "overlay_mount",
    "run_in_rootfs",
    "sandbox_ids",
    "write_layer_from_upper",
]
