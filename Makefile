# Two entry points: `make demo` and `make test`. Both create the virtual
# environment first, so a fresh clone needs nothing but Python 3.11+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format bench soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m journalq.demo

test: $(STAMP)
	$(BIN)/ruff check journalq tests benchmarks
	$(BIN)/ruff format --check journalq tests benchmarks
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check journalq tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format journalq tests benchmarks

bench: $(STAMP)
	$(BIN)/python -m benchmarks

soak: $(STAMP)
	JOURNALQ_SOAK=1 $(BIN)/python -m pytest -m slow

clean:
	rm -rf $(VENV) demo .pytest_cache .ruff_cache .hypothesis
