# Entry points: `make demo` and `make test` work on a fresh Debian/Ubuntu machine as root.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEB_PACKAGES := docker-registry skopeo buildah qemu-user-static docker.io apache2-utils git openssl ca-certificates
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck pytest deps system-deps venv qemu demo bench docs clean

test: deps lint typecheck pytest

deps: system-deps venv qemu

# Install only the Debian packages that are missing; never prompt.
system-deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if ! $(PYTHON) -c 'import ensurepip, venv' >/dev/null 2>&1; then missing="$$missing python3-venv"; fi; \
	if ! dpkg --print-foreign-architectures | grep -qx arm64; then dpkg --add-architecture arm64; update=1; fi; \
	if [ -n "$$missing" ] || [ -n "$$update" ]; then \
	  echo ">> installing Debian packages:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# Register QEMU user emulation for foreign-arch binaries (arm64 on amd64 and back).
qemu:
	@bash scripts/setup-qemu.sh

lint:
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck:
	$(BIN)/mypy

pytest:
	$(BIN)/pytest

demo: deps
	$(BIN)/multiarch-mirror demo $(DEMO_ARGS)

bench: deps
	$(BIN)/python bench/copy.py
	$(BIN)/python bench/check.py
	$(BIN)/python bench/build.py
	$(BIN)/python bench/assemble.py

# Regenerate the catalog reference from the config models' JSON Schema.
docs: venv
	$(BIN)/multiarch-mirror schema --markdown > docs/catalog-reference.md

clean:
	rm -rf $(VENV) .cache .mirror-state mirror-out
