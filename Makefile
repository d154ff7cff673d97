# Two commands matter: `make run` and `make test`. `make install` builds the environment alone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= data/demo
PORT ?= 8501

.PHONY: install run test test-later lint lock demo clean fleet

install: $(STAMP)

# The exact versions (with hashes) come from requirements.lock; the project itself is installed on top, without deps.
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade 'pip>=24'
	$(BIN)/python -m pip install -q --require-hashes -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

# Writes requirements.lock again from pyproject.toml (after a dependency changes); commit both.
lock: install
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 --no-header -o requirements.lock

demo: install
	$(BIN)/synchealth demo --dir $(DEMO_DIR)
	$(BIN)/synchealth ingest $(DEMO_DIR)/awra

# The demo store is rebuilt each time, with six simulated weeks of history from the real engine (36 s to 2 minutes),
# so that Trends has something true to show; the sandbox then starts from the company file the history left.
run: install
	rm -f data/synchealth.duckdb data/synchealth.duckdb.wal
	$(BIN)/python -m pipelines.demo.history --dir $(DEMO_DIR)
	$(BIN)/python -m pipelines.demo.launcher $(DEMO_DIR) --port $(PORT)

# Fleet mode, locally: a private PostgreSQL cluster, the sandbox with several companies, workers and one app server
# (`synchealth fleet -h` for the counts). Ctrl-C stops every process it started.
fleet: install
	$(BIN)/synchealth fleet --port $(PORT)

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy pipelines schemas qbo
	$(BIN)/python -m pytest -q

# The whole suite again with every process's wall clock 400 days ahead (Debian's faketime): nothing may depend on the
# day the tests were written. Browser, server, fleet and chaos tests run under the moved clock. The monotonic clock is
# left alone (durations are measured on it, dates never): faketime 0.9.10 moves it, but not the deadline of a timed
# wait (sem_clockwait), so a wait with a timeout (threading.Event.wait(0.5), a lock, a queue) never returned and the
# fleet's workers hung. tests/faketime/sitecustomize.py mends time.sleep for that mode (see there).
test-later: install
	PYTHONPATH=$(CURDIR)/tests/faketime FAKETIME_DONT_FAKE_MONOTONIC=1 faketime -f '+400d' $(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) data test-artifacts
