# Every target bootstraps .venv from nothing, so a fresh clone needs only `make`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo dist test lint typecheck pytest bench docs clean system-deps test-pythons \
	django-suite django-suite-c django-suite-pure django-suite-stock

# setup.py and the C source too: an editable install builds tocsin._speedups in place.
$(STAMP): pyproject.toml setup.py core/tocsin/_speedups.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# `make demo` has an environment of its own, .venv-demo, holding only what the demo
# runs: tocsin (with its C send), pluggy (and tomli before Python 3.11), and the four
# example plugins in plugins/, which are real distributions that pip builds and
# installs. The venv gets no pip of its own (that saves seconds): $(PYTHON)'s pip
# installs into it with --python (pip >= 22.3; else the venv gets one from ensurepip).
# One setuptools in the venv builds tocsin and the plugins, instead of pip fetching a
# fresh one into an isolated build environment for each of the five.
DEMO_VENV     := .venv-demo
DEMO_STAMP    := $(DEMO_VENV)/.installed
PLUGINS       := $(wildcard plugins/*)
DEMO_SOURCES  := pyproject.toml setup.py $(shell find core/tocsin plugins -type f \
	-not -path '*/build/*' -not -path '*.egg-info/*' -not -name '*.pyc' -not -name '*.so')

$(DEMO_STAMP): $(DEMO_SOURCES)
	@echo "Installing tocsin, pluggy and the example plugins into $(DEMO_VENV)/"
	@[ -x $(DEMO_VENV)/bin/python ] || $(PYTHON) -m venv --without-pip $(DEMO_VENV)
	@pip="$(PYTHON) -m pip --python $(DEMO_VENV)/bin/python"; \
	$$pip --version >/dev/null 2>&1 || { pip="$(DEMO_VENV)/bin/python -m pip"; \
		$$pip --version >/dev/null 2>&1 || $(DEMO_VENV)/bin/python -m ensurepip --default-pip >/dev/null; }; \
	$$pip install --quiet 'setuptools>=70.1' && \
	$$pip install --quiet --no-build-isolation . $(addprefix ./,$(PLUGINS))
	@touch $@

demo: $(DEMO_STAMP)
	$(DEMO_VENV)/bin/python demo/app.py

# tocsin's source distribution and wheel, in dist/ (built by `build` in an isolated
# environment, as a release would be), then checked by twine: metadata and README.
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --quiet --outdir dist .
	$(BIN)/twine check --strict dist/*

# Django's own test suite, with Django running on tocsin, is part of the tests (issue 12).
test: lint typecheck pytest django-suite

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The whole suite on the C send (it must have been built), then the core modules again
# on the pure-Python one, which is what installs without a C compiler get.
CORE_TESTS := tests/test_send.py tests/test_registry.py tests/test_signal_checks.py tests/test_signal.py tests/test_signal_async.py \
	tests/test_signal_model.py tests/test_signal_threads.py tests/test_django_compat.py \
	tests/test_testing_capture.py tests/test_error_messages.py
pytest: $(STAMP)
	TOCSIN_EXPECT_COMPILED=1 $(BIN)/python -m pytest
	TOCSIN_PURE_PYTHON=1 $(BIN)/python -m pytest -q $(CORE_TESTS)

# Django's own test suite with Django running on tocsin (tests/django_suite/run.py): the
# test apps that exercise signals, from Django 5.2's source distribution (fetched once
# with pip), on SQLite, on the C send and then on the pure one.  DJANGO_SUITE_ARGS are
# passed on to Django's runtests.py (test labels, -v 2, -k ...); `make -k django-suite`
# runs the pure send's half even when the C send's fails.
DJANGO_SUITE_SPEC  ?= django==5.2.20
DJANGO_SUITE_DIR   := .cache/django-suite
DJANGO_SUITE_SRC   := $(DJANGO_SUITE_DIR)/src
DJANGO_SUITE_FETCH := $(DJANGO_SUITE_DIR)/.fetched
DJANGO_SUITE_DEPS  := $(VENV)/.django-suite-deps
DJANGO_SUITE_ARGS  ?=

$(DJANGO_SUITE_FETCH): | $(STAMP)
	rm -rf $(DJANGO_SUITE_DIR) && mkdir -p $(DJANGO_SUITE_SRC)
	$(BIN)/python -m pip download --quiet --no-deps --no-binary :all: \
		'$(DJANGO_SUITE_SPEC)' -d $(DJANGO_SUITE_DIR)
	tar -xzf $(DJANGO_SUITE_DIR)/django-*.tar.gz -C $(DJANGO_SUITE_SRC) --strip-components=1
	touch $@

# The same Django installed in .venv as the tests come from (the runner imports the
# source's own copy; this brings its dependencies at the versions it asks), and what
# the chosen apps' tests need beyond that: Pillow, for ImageField, which connects
# post_init (without it those tests skip).
$(DJANGO_SUITE_DEPS): $(STAMP) $(DJANGO_SUITE_FETCH)
	$(BIN)/python -m pip install --quiet \
		"django==$$(sed -n 's/^Version: //p' $(DJANGO_SUITE_SRC)/PKG-INFO)" 'Pillow>=6.2.1'
	touch $@

django-suite: django-suite-c django-suite-pure
django-suite-c: $(DJANGO_SUITE_DEPS)
	TOCSIN_EXPECT_COMPILED=1 $(BIN)/python tests/django_suite/run.py $(DJANGO_SUITE_SRC) \
		$(DJANGO_SUITE_ARGS)
django-suite-pure: $(DJANGO_SUITE_DEPS)
	TOCSIN_PURE_PYTHON=1 $(BIN)/python tests/django_suite/run.py $(DJANGO_SUITE_SRC) \
		$(DJANGO_SUITE_ARGS)

# The same tests on stock Django (no swap): the baseline, which must pass here.
django-suite-stock: $(DJANGO_SUITE_DEPS)
	TOCSIN_DJANGO_SUITE_STOCK=1 $(BIN)/python tests/django_suite/run.py $(DJANGO_SUITE_SRC) \
		$(DJANGO_SUITE_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/run.py

# Strict: a broken reference or link fails the build. Charts come from bench/results.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The suite again on every other supported interpreter found here (pyenv's, or on
# PATH), each in its own .venv-3.X; an interpreter that is missing is said, not failed.
OTHER_PYTHONS ?= 3.10 3.12 3.13 3.14
# The suite again on each other interpreter; the outbox's outage tests send 2,000
# messages there instead of 10,000 (the full count runs once, in `make test`).
test-pythons:
	@for v in $(OTHER_PYTHONS); do \
		py=$$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/$$v.*/bin/python 2>/dev/null | tail -1); \
		[ -n "$$py" ] || py=$$(command -v python$$v || true); \
		if [ -z "$$py" ]; then echo "== Python $$v: not installed here, skipped"; continue; fi; \
		echo "== Python $$v: $$py"; \
		[ -x .venv-$$v/bin/python ] || $$py -m venv .venv-$$v || exit 1; \
		.venv-$$v/bin/python -m pip install --quiet -e '.[test,lint]' || exit 1; \
		TOCSIN_EXPECT_COMPILED=1 TOCSIN_TEST_OUTAGE_SENDS=2000 \
			.venv-$$v/bin/python -m pytest -q -p no:cacheprovider || exit 1; \
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
	rm -rf $(VENV) $(DEMO_VENV) dist .cache build core/*.egg-info core/tocsin/*.so .pytest_cache .mypy_cache .ruff_cache
