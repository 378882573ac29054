"""distill.registry: talking to image registries (credentials, ...)."""
