"""Distroless base images assembled from Debian packages, without running anything.

* :mod:`~distill.distroless.presets`: what goes in (static, base, cc, python3; variants).
* :mod:`~distill.distroless.files`: what distroless adds (users, CA bundle, status.d, ...).
* :mod:`~distill.distroless.assemble`: packages -> one deterministic layer -> an Image.
"""
