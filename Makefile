# Two commands for a new user: `make run` and `make test`. Both set up .venv first: `make run`
# with what running needs, `make test` (and `make lint`) with the test tooling as well.
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint bench install clean faults

# What running Beacon needs (`make run`): the package and its dependencies, no test tooling.
# A venv that already has the dev extra (`make install`, `make test`) has all of it.
$(VENV)/.runtime: pyproject.toml
	if [ $(VENV)/.installed -nt pyproject.toml ]; then touch $@; else \
	  test -x $(PY) || $(PYTHON) -m venv $(VENV); \
	  $(PY) -m pip install --quiet --upgrade pip && \
	  $(PY) -m pip install --quiet -e . && touch $@; fi

# What developing needs (`make test`, `make lint`, `make install`): the `dev` extra too.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.runtime

# axe-core for the page's accessibility test (tests/pages_html/test_browser.py); only the
# tests need it, so `make run` does not.
tests/pages_html/node_modules/.installed: tests/pages_html/package.json
	if command -v npm >/dev/null; then npm install --prefix tests/pages_html --no-audit --no-fund --silent && touch $@; fi

# oidc-provider for the single sign-on test (tests/accounts/test_oidc.py): a real OpenID
# provider on loopback.
tests/accounts/oidc/node_modules/.installed: tests/accounts/oidc/package.json
	if command -v npm >/dev/null; then npm install --prefix tests/accounts/oidc --no-audit --no-fund --silent && touch $@; fi

install: $(VENV)/.installed

run: $(VENV)/.runtime
	$(VENV)/bin/beacon serve --host $(HOST) --port $(PORT) --config examples/beacon.yaml

# Three test processes (pytest-xdist): most of the suite's time is spent waiting on servers,
# browsers and subprocesses, so three share the two cores of CI's machine well (about twice
# as fast as one process). TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= 3

test: install tests/pages_html/node_modules/.installed tests/accounts/oidc/node_modules/.installed
	$(PY) -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

# The fault harness at full length (tests/faults; the normal suite runs its short version):
# prints the invariant table after each fault.
faults: install
	BEACON_FAULTS=full $(PY) -m pytest -q -s tests/faults

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

bench: install
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) beacon-data .pytest_cache .mypy_cache .ruff_cache
