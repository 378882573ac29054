"""A small web service: the payload of the Python example (one PyPI dependency: bottle)."""

import os

from bottle import Bottle, run

app = Bottle()


@app.route("/")
def hello() -> str:
    return f"hello from distill python (uid {os.getuid()})\n"


if __name__ == "__main__":
    host, _, port = os.environ.get("ADDR", "0.0.0.0:8000").rpartition(":")
    run(app, host=host or "0.0.0.0", port=int(port), quiet=True)
