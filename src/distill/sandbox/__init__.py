"""The only part of distill that makes mount syscalls, and the only one that runs what a
Dockerfile or a base image brings.

* :mod:`~distill.sandbox.namespace`: a private mount namespace for the process.
* :mod:`~distill.sandbox.overlay`: overlayfs root filesystems over snapshots.
* :mod:`~distill.sandbox.layers`: layer tars <-> overlayfs directories.
* :mod:`~distill.sandbox.run`: RUN steps under bubblewrap.

The names below are loaded from their modules when first used (PEP 562), so that a
command importing one submodule (the CLI's namespace setup) does not load them all.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distill.sandbox._rootfs import make_dirs
    from distill.sandbox.layers import extract_layer, write_layer_from_upper
    from distill.sandbox.namespace import ensure_private_mount_namespace
    from distill.sandbox.overlay import OverlayMount, overlay_mount
    from distill.sandbox.run import ProcessGroup, RunSpec, run_in_rootfs, sandbox_ids

_WHERE = {
    "make_dirs": "_rootfs", "extract_layer": "layers", "write_layer_from_upper": "layers",
    "ensure_private_mount_namespace": "namespace", "OverlayMount": "overlay",
    "overlay_mount": "overlay", "ProcessGroup": "run", "RunSpec": "run",
    "run_in_rootfs": "run", "sandbox_ids": "run",
}

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


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'distill.sandbox' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"distill.sandbox.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
