# The template's own commands. Needs Python 3.11+ as python3, and uses uv
# (https://docs.astral.sh/uv/): the one on PATH, or else one that pip installs into the venv.
VENV ?= .venv
BIN := $(VENV)/bin
# After everything else on PATH: a uv installed into the venv is found by these recipes, by
# the tests and by the projects they bake, only when PATH has none of its own.
export PATH := $(PATH):$(abspath $(BIN))

.PHONY: lint test bench demo standins

# Bytecode compiled at install, as pip does: the tests start hundreds of Python processes.
$(VENV)/.installed: requirements.txt
	@command -v uv >/dev/null 2>&1 || { \
		echo "uv is not on PATH: installing it into $(VENV) with pip"; \
		python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
			|| { echo "python3 is older than 3.11" >&2; exit 1; }; \
		python3 -m venv $(VENV) && $(BIN)/python -m pip install --quiet uv; \
	}
	uv venv --allow-existing --python ">=3.11" $(VENV)
	uv pip install --compile-bytecode --python $(BIN)/python -r requirements.txt
	@touch $@

# The template's own code: hooks, tests and benchmarks.
lint: $(VENV)/.installed
	$(BIN)/ruff check hooks tests bench
	$(BIN)/ruff format --check hooks tests bench
	$(BIN)/mypy

# Bake every combination, lint, type-check, install, migrate and run each one's tests.
test: lint
	$(BIN)/pytest

# The stand-in images the container tests run on (tests/podman.py), built ahead: a
# first `make test` builds them too. Needs root, podman and debootstrap.
standins: $(VENV)/.installed
	$(BIN)/python -m tests.podman

# Every figure the README claims, next to its raw baseline: bench/results/latest.{md,json,png}.
# Needs redis-server. Not part of `test` (figures are noisy); a smoke run with tiny counts is.
bench: $(VENV)/.installed
	$(BIN)/python bench/run.py

# Bake the default answers into build/demo and serve it on http://127.0.0.1:8000.
demo: $(VENV)/.installed
	rm -rf build/demo
	$(BIN)/cookiecutter --no-input --output-dir build/demo .
	$(MAKE) -C build/demo/job_service run
