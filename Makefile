# The two entry points: `make demo` and `make test`. Both install what they need.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := bubblewrap passt uidmap skopeo umoci buildah docker.io golang-go mmdebstrap \
	busybox-static debian-archive-keyring gpgv ca-certificates git openssh-client \
	docker-registry apache2-utils openssl yq python3-venv chromium chromium-driver

.PHONY: demo test deps apt venv bench clean

apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@# pasta (RUN's private network) runs unprivileged and opens /dev/net/tun, which udev
	@# makes 0666 on Debian; machines without udev (CI) leave it 0600.
	@if [ -c /dev/net/tun ] && [ "$$(stat -c %a /dev/net/tun)" != 666 ]; then \
	  echo "chmod 0666 /dev/net/tun (as udev sets it)"; chmod 0666 /dev/net/tun; fi

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

deps: apt venv

demo: deps
	$(PY) examples/demo.py

test: deps
	$(VENV)/bin/ruff check src
	$(VENV)/bin/mypy src/distill
	$(PY) -m pytest -q tests
	@# the build tests again, as an ordinary user: rootless distill (issue 14)
	tests/rootless/run

bench: deps
	$(PY) bench/go_hello.py
	$(PY) bench/export.py
	$(PY) bench/registry.py

clean:
	rm -rf $(VENV) .cache
