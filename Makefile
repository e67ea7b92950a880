# Every target bootstraps .venv from nothing, so a fresh clone needs only `make`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest bench docs clean system-deps test-pythons

# setup.py and the C source too: an editable install builds tocsin._speedups in place.
$(STAMP): pyproject.toml setup.py core/tocsin/_speedups.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

PLUGINS       := $(wildcard plugins/*)
PLUGINS_STAMP := $(VENV)/.plugins-installed

# The example plugins are real distributions: pip builds and installs them.
$(PLUGINS_STAMP): $(STAMP) $(shell find plugins -type f -not -path '*/build/*' -not -name '*.pyc')
	$(BIN)/python -m pip install --quiet --no-deps --force-reinstall $(addprefix ./,$(PLUGINS))
	touch $(PLUGINS_STAMP)

demo: $(PLUGINS_STAMP)
	$(BIN)/python demo/app.py

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The whole suite on the C send (it must have been built), then the core modules again
# on the pure-Python one, which is what installs without a C compiler get.
CORE_TESTS := tests/test_send.py tests/test_registry.py tests/test_signal.py tests/test_signal_async.py \
	tests/test_signal_model.py tests/test_signal_threads.py tests/test_django_compat.py \
	tests/test_testing_capture.py tests/test_error_messages.py
pytest: $(STAMP)
	TOCSIN_EXPECT_COMPILED=1 $(BIN)/python -m pytest
	TOCSIN_PURE_PYTHON=1 $(BIN)/python -m pytest -q $(CORE_TESTS)

bench: $(STAMP)
	$(BIN)/python bench/run.py

# Strict: a broken reference or link fails the build. Charts come from bench/results.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The suite again on every other supported interpreter found here (pyenv's, or on
# PATH), each in its own .venv-3.X; an interpreter that is missing is said, not failed.
OTHER_PYTHONS ?= 3.10 3.12 3.13 3.14
test-pythons:
	@for v in $(OTHER_PYTHONS); do \
		py=$$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/$$v.*/bin/python 2>/dev/null | tail -1); \
		[ -n "$$py" ] || py=$$(command -v python$$v || true); \
		if [ -z "$$py" ]; then echo "== Python $$v: not installed here, skipped"; continue; fi; \
		echo "== Python $$v: $$py"; \
		[ -x .venv-$$v/bin/python ] || $$py -m venv .venv-$$v || exit 1; \
		.venv-$$v/bin/python -m pip install --quiet -e '.[test,lint]' || exit 1; \
		TOCSIN_EXPECT_COMPILED=1 .venv-$$v/bin/python -m pytest -q -p no:cacheprovider || exit 1; \
		TOCSIN_PURE_PYTHON=1 .venv-$$v/bin/python -m pytest -q -p no:cacheprovider $(CORE_TESTS) || exit 1; \
	done

# Servers the integration tests start themselves (PostgreSQL, Redis). Installed with
# apt when missing and we are root; otherwise those tests skip and say why.
SYSTEM_PACKAGES := postgresql redis-server
system-deps:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	if [ -z "$$missing" ]; then echo "system packages present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else echo "not installing$$missing (needs root and apt-get): those tests will skip"; fi

clean:
	rm -rf $(VENV) build core/*.egg-info core/tocsin/*.so .pytest_cache .mypy_cache .ruff_cache
