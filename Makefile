# Every target bootstraps .venv from nothing, so a fresh clone needs only `make`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest bench clean

$(STAMP): pyproject.toml
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

pytest: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build core/*.egg-info .pytest_cache .mypy_cache .ruff_cache
