"""distill.registry: talking to image registries: hosts and credentials, the HTTP client,
pulls and pushes, and finding a build's base images (the store first, else a pull)."""
