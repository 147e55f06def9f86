# Two entry points: `make demo` and `make test`. Both create the virtual
# environment first, so a fresh clone needs nothing but Python 3.11+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: demo test test-deps lint format bench bench-deps soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m journalq.demo

test: $(STAMP) test-deps
	$(BIN)/ruff check journalq tests benchmarks
	$(BIN)/ruff format --check journalq tests benchmarks
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check journalq tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format journalq tests benchmarks

# The bench extra: matplotlib for the plots, Dask and moto for the cluster
# benchmark. Installed again only when pyproject.toml changes.
$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

# The published results page and its plots: every benchmark, with seven
# interleaved rounds of every transfer scenario.
bench: $(BENCH_STAMP) bench-deps
	BENCH_COMMAND='make bench' $(BIN)/python -m benchmarks --rounds 7

# The peer tools the benchmarks time journalq against, from Debian's packages.
# Installs only what is missing, so a second run changes nothing.
bench-deps:
	@missing=""; \
	for tool in rclone rsync; do \
		command -v $$tool >/dev/null || missing="$$missing $$tool"; \
	done; \
	if [ -n "$$missing" ]; then \
		apt-get update && apt-get install -y $$missing; \
	else \
		echo "bench-deps: rclone and rsync are installed"; \
	fi

# The SFTP backend tests run OpenSSH's sshd on 127.0.0.1, and the terminal
# tests run journalq in tmux, both from Debian's packages. Installs only
# what is missing, like bench-deps.
test-deps:
	@missing=""; \
	[ -x /usr/sbin/sshd ] || missing="$$missing openssh-server"; \
	command -v tmux >/dev/null || missing="$$missing tmux"; \
	if [ -n "$$missing" ]; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	else \
		echo "test-deps: openssh-server and tmux are installed"; \
	fi

# The long crash tests: thousands of kills, crash points and power cuts
# (tests/survival/README.md). About 20 minutes on 2 cores, estimated from
# the CI counts and timings.
soak: $(STAMP)
	JOURNALQ_SOAK=1 $(BIN)/python -m pytest -m slow --durations=10

clean:
	rm -rf $(VENV) demo .pytest_cache .ruff_cache .hypothesis
