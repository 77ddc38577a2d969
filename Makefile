# nightjar — developer entry points. Every target works on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PACKAGES := configurator nightjar_cli envoy_fetcher shared sandbox demo bench

.PHONY: install lint test bench bench-propagation bench-fetcher demo clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[configurator,dev]'
	touch $(STAMP)

lint: install
	$(BIN)/ruff check $(PACKAGES) tests
	$(BIN)/ruff format --check $(PACKAGES) tests
	$(BIN)/mypy --strict $(PACKAGES)

test: lint
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest

bench: install
	$(BIN)/python -m bench

# Cloud Map write -> first request served with the new weights, through real processes and Envoy.
bench-propagation: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m bench.propagation

# The fetcher's idle RSS and CPU per poll, and Envoy's apply time for 10 / 100 / 1000 clusters.
bench-fetcher: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m bench.fetcher

demo: install
	$(BIN)/python -m demo

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
