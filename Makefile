# Quick start: `make demo` (the job against the bundled Kite simulator, into SQLite)
# and `make test` (the test suite, on SQLite and PostgreSQL).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: install bytecode demo test lint bench docs nse-calendar

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

# The package's bytecode (its migrations' too), as an installed program has it (pip
# compiles what it installs): with PYTHONDONTWRITEBYTECODE set, as on our machines, every
# `snapshotter` process would otherwise compile our modules from source (about 0.1 s each).
bytecode: install
	$(BIN)/python -m compileall -q snapshotter migrations

demo: bytecode
	$(BIN)/snapshotter demo
	@echo "(from this checkout: $(BIN)/snapshotter --config demo-output/config.yaml serve)"

test: bytecode
	$(BIN)/ruff check snapshotter migrations tests benchmarks
	$(BIN)/mypy snapshotter
	$(BIN)/lint-imports
	$(BIN)/pytest -q -n 4

bench: bytecode
	$(BIN)/python benchmarks/bench_all.py

# Optional: README.md and docs/ as a site in site/ (mkdocs, not needed by the tests).
docs: install
	$(BIN)/pip install --quiet 'mkdocs>=1.6,<2'
	$(BIN)/mkdocs build --strict

# After upgrading pandas_market_calendars: regenerate the NSE sessions table commands read.
nse-calendar: install
	$(BIN)/python -c "from snapshotter.sessions import write_nse_calendar; write_nse_calendar()"
