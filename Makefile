# mutuapix.ops — see README.md. Every target installs what it needs first.
SHELL := /bin/bash
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
export PATH := $(BIN):$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.build/collections
export PYTHONPATH := $(CURDIR)/.build/collections
export ANSIBLE_NOCOLOR := 1
PYTEST_ARGS ?=
# pytest-xdist workers: the tests mostly wait on one busy process at a time (ansible-playbook, a
# dump, a restore), so two workers halved the pytest run on a 2-core host (17 to 9 minutes). Each
# worker starts its own private servers. PYTEST_JOBS=0 runs everything in one process.
PYTEST_JOBS ?= 2
PYTEST := pytest -q -p no:cacheprovider -n $(PYTEST_JOBS) --dist worksteal
# `make compat`: the oldest supported ansible-core releases (README: 2.17+), one venv each:
# .venv-core2.17, .venv-core2.18.
COMPAT_CORES ?= 2.17.14 2.18.19

.PHONY: all bootstrap demo demo-stop test lint sanity units integration compat bench clean

all: test

bootstrap:
	@scripts/bootstrap.sh test

lint: bootstrap
	ruff check .
	ruff format --check .
	@# Modules run on the managed hosts, whose Python may be as old as ansible-core allows (3.8):
	@# their syntax (ruff) and standard-library use (vermin) must hold there.
	ruff check --isolated --no-cache --target-version py38 --select E9 plugins/modules plugins/module_utils
	vermin --quiet --no-tips --backport typing --violations --target=3.8- plugins/modules plugins/module_utils
	yamllint -s .
	ansible-lint --profile production
	shellcheck .ci/run scripts/*.sh bench/*.sh

sanity: bootstrap
	scripts/sanity.sh

units: bootstrap
	$(PYTEST) tests/unit $(PYTEST_ARGS)

integration: bootstrap
	$(PYTEST) tests/integration $(PYTEST_ARGS)

# Static checks first (each blocks), then one pytest run so its summary line ends the output.
test: lint sanity
	$(PYTEST) tests/unit tests/integration $(PYTEST_ARGS)

# The unit and integration tests again on ansible-core 2.17 and 2.18, each in its own venv
# (not part of `make test`: .ci/run runs it after `make test`). There the modules run on what a
# Debian 12 database host has: its own python3 with Debian's PyMySQL, zstandard, cryptography and
# boto3 (the backup role installs those), older than the venv's pinned releases.
COMPAT_MODULE_PYTHON ?= /usr/bin/python3
compat:
	@COMPAT_CORES="$(COMPAT_CORES)" scripts/bootstrap.sh compat
	@for venv in $(foreach core,$(COMPAT_CORES),$(CURDIR)/.venv-core$(basename $(core))); do \
	  echo "compat: $$($$venv/bin/ansible --version | head -1), modules on $(COMPAT_MODULE_PYTHON)"; \
	  PATH="$$venv/bin:$$PATH" MUTUAPIX_MODULE_PYTHON="$(COMPAT_MODULE_PYTHON)" \
	    $$venv/bin/python -m $(PYTEST) tests/unit tests/integration $(PYTEST_ARGS) \
	    || { echo "compat: the tests failed on $$($$venv/bin/ansible --version | head -1)" >&2; exit 1; }; \
	done

# The demo needs the Debian packages and .venv only (not ansible-test's sanity venv).
demo:
	@scripts/bootstrap.sh demo
	scripts/demo.sh start

demo-stop:
	scripts/demo.sh stop

bench:
	@scripts/bootstrap.sh bench
	bench/run_all.sh

clean: demo-stop
	rm -rf .build .venv .venv-sanity .venv-bench .venv-core* .pytest_cache .ruff_cache
