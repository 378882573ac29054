"""Layer tars <-> overlayfs directories.

* :func:`extract_layer` unpacks an OCI layer into a snapshot directory usable
  as an overlayfs lower directory.
* :func:`write_layer_from_upper` writes the upper directory of an overlay
  mount (the diff of one step) as an OCI layer.

Both stream: a layer is never held in memory.
"""

from __future__ import annotations

from distill.sandbox._extract import extract_layer
from distill.sandbox._write import write_layer_from_upper

__all__ = ["extract_layer", "write_layer_from_upper"]
