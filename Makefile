# Two commands matter: `make run` and `make test`. `make install` builds the environment alone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= data/demo
PORT ?= 8501

.PHONY: install run test lint demo clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/synchealth demo --dir $(DEMO_DIR)
	$(BIN)/synchealth ingest $(DEMO_DIR)/awra

# The demo store is rebuilt each time, with six simulated weeks of history from the real engine (36 s to 2 minutes),
# so that Trends has something true to show; the sandbox then starts from the company file the history left.
run: install
	rm -f data/synchealth.duckdb data/synchealth.duckdb.wal
	$(BIN)/python -m pipelines.demo_history --dir $(DEMO_DIR)
	PORT=$(PORT) $(BIN)/python -m pipelines.run_demo $(DEMO_DIR)

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) data test-artifacts
