"""A web service laid out as ``uv init`` lays out an application, started by ``uv run``."""

import os

import bottle


@bottle.route("/")
def hello() -> str:
    return f"hello from distill uv (uid {os.getuid()})\n"


def serve(addr: str) -> None:
    host, _, port = addr.rpartition(":")
    bottle.run(host=host or "0.0.0.0", port=int(port), quiet=True)


if __name__ == "__main__":
    serve(os.environ.get("ADDR", "0.0.0.0:8000"))
