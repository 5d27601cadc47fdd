# mutuapix.ops — see README.md. Every target installs what it needs first.
SHELL := /bin/bash
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
export PATH := $(BIN):$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.build/collections
export PYTHONPATH := $(CURDIR)/.build/collections
export ANSIBLE_NOCOLOR := 1
PYTEST_ARGS ?=

.PHONY: all bootstrap demo demo-stop test lint sanity units integration bench clean

all: test

bootstrap:
	@scripts/bootstrap.sh test

lint: bootstrap
	ruff check .
	ruff format --check .
	yamllint -s .
	ansible-lint --profile production
	shellcheck .ci/run scripts/*.sh bench/*.sh

sanity: bootstrap
	scripts/sanity.sh

units: bootstrap
	pytest -q tests/unit $(PYTEST_ARGS)

integration: bootstrap
	pytest -q tests/integration $(PYTEST_ARGS)

# Static checks first (each blocks), then one pytest run so its summary line ends the output.
test: lint sanity
	pytest -q -p no:cacheprovider tests/unit tests/integration $(PYTEST_ARGS)

demo: bootstrap
	scripts/demo.sh start

demo-stop:
	scripts/demo.sh stop

bench:
	@scripts/bootstrap.sh bench
	bench/run_all.sh

clean: demo-stop
	rm -rf .build .venv .venv-sanity .venv-bench .pytest_cache .ruff_cache
