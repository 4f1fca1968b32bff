# netaware developer entry points. The README names exactly two for a fresh machine: `make demo` and `make test`.
# Every target installs what it needs and can be re-run.

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# Debian packages the project uses: iproute2 for namespaces and tc; iperf3 for bandwidth probes; mmdebstrap, podman
# and skopeo to build images without Docker; containerd, runc, the CNI plugins, nftables and catatonit (the pause
# image) for the lab's real nodes.
DEBIAN_PACKAGES := iproute2 iperf3 openssl chromium mmdebstrap podman skopeo containerd runc \
  containernetworking-plugins nftables catatonit

.PHONY: demo test venv debian controlplane images lint unit cluster bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,plots]'
	touch $@

venv: $(VENV)/.installed

debian:
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

controlplane:
	bash hack/controlplane/build.sh

# netaware's images (mmdebstrap + podman, no Docker, no registry) and their OCI archives in build/images/; cached.
images: venv debian controlplane
	COLUMNS=140 $(VENV)/bin/netaware images build

lint: venv
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

unit: venv
	$(VENV)/bin/pytest tests/unit -q

cluster: venv debian controlplane
	$(VENV)/bin/pytest tests/cluster -q -m cluster

bench: venv controlplane
	COLUMNS=150 $(PY) benchmarks/bench_scoring.py
	COLUMNS=150 $(PY) benchmarks/bench_extender.py
	COLUMNS=150 $(PY) benchmarks/bench_simulation.py
	COLUMNS=150 $(PY) benchmarks/bench_router.py --out build/bench-router
	COLUMNS=150 $(PY) benchmarks/bench_aggregator.py

# The README's test command: every tier, then the benchmarks' figures.
test: venv debian controlplane images lint
	$(VENV)/bin/pytest tests -q -m ""
	$(MAKE) --no-print-directory bench

# The README's main command: control plane + a lab of real nodes + the standard experiment, then tear down (root).
demo: venv debian controlplane images
	COLUMNS=140 $(VENV)/bin/netaware demo

clean:
	rm -rf $(VENV) hack/controlplane/bin
