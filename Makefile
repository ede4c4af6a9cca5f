# The template's own commands. Needs uv (https://docs.astral.sh/uv/) and Python 3.11+.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: lint test bench demo

$(VENV)/.installed: requirements.txt
	uv venv --allow-existing --python ">=3.11" $(VENV)
	uv pip install --python $(BIN)/python -r requirements.txt
	@touch $@

# The template's own code: hooks, tests and benchmarks.
lint: $(VENV)/.installed
	$(BIN)/ruff check hooks tests bench
	$(BIN)/ruff format --check hooks tests bench
	$(BIN)/mypy

# Bake every combination, lint, type-check, install, migrate and run each one's tests.
test: lint
	$(BIN)/pytest

# Every figure the README claims, next to its raw baseline: bench/results/latest.{md,json,png}.
# Needs redis-server. Not part of `test` (figures are noisy); a smoke run with tiny counts is.
bench: $(VENV)/.installed
	$(BIN)/python bench/run.py

# Bake the default answers into build/demo and serve it on http://127.0.0.1:8000.
demo: $(VENV)/.installed
	rm -rf build/demo
	$(BIN)/cookiecutter --no-input --output-dir build/demo .
	$(MAKE) -C build/demo/job_service run
