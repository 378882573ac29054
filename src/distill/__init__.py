"""distill: a daemonless builder for small, reproducible OCI images."""

from __future__ import annotations

__version__ = "0.1.0"
