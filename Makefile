# ecomm_data_pipeline: the whole daily pipeline on this machine, then its tests.
#   make run    install, start the local stack, backfill every demo partition, show the KPIs
#               (make run DAYS=2026-11-20...2026-11-22 builds those days only)
#   make dev    the Dagster UI on http://127.0.0.1:3000 over the same local state (PORT=3001 for another port)
#   make test   the test suite (the Spark parity tests included)
#   make parity the DLT SQL on local Spark against the DuckDB engine, alone (~3 min)
#   make bench  the benchmarks, side by side (results in .ecomm_home/bench, ~15 min)
#   make stop   stop the local stack (ecomm-db's PostgreSQL); the data stays. make start starts it
#   make clean  stop the local stack and remove everything it made
#   make lock   re-resolve the dependencies into constraints.txt (then commit it)

VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
export ECOMM_HOME ?= $(CURDIR)/.ecomm_home
export DAGSTER_HOME ?= $(ECOMM_HOME)/dagster
# the local Dagster instance's storage, in the embedded PostgreSQL (ecomm_assets/instance/local.yaml)
export ECOMM_DAGSTER_PG_URL ?= postgresql+psycopg2://ecomm@127.0.0.1:$(or $(ECOMM_PG_PORT),54329)/dagster?sslmode=disable
MANIFEST := dbt_project/target/manifest.json
# the port of the Dagster UI (make dev); the alerts link to it
PORT ?= 3000
# the partitions start at the first seeded day (written by `local_stack seed`)
FIRST_DAY = ECOMM_FIRST_INGESTION_DATE=$$(cut -d. -f1 $(ECOMM_HOME)/seeded_window.txt 2>/dev/null)

.PHONY: install manifest instance run dev start stop test lint parity bench clean lock

# The versions every machine installs: constraints.txt, resolved by `make lock`.
install: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml constraints.txt
	@echo "==> Creating the virtualenv $(VENV)"
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@echo "==> Installing the pinned dependencies (constraints.txt) and this project: a few minutes the first time"
	$(BIN)/pip install --progress-bar on -c constraints.txt -e '.[test]'
	@echo "==> Installed"
	touch $@

lock:
	rm -rf .lock-venv && python3 -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip
	.lock-venv/bin/pip install --quiet -e '.[test]'
	(echo "# pip freeze of a fresh install of .[test] (make lock); make install installs exactly these"; \
	 .lock-venv/bin/pip freeze --exclude-editable --exclude pip) > constraints.txt
	rm -rf .lock-venv

# dbt parses once here (ecomm_assets/metrics/project.py), not at import time of the code location;
# so does the DLT SQL (its parse kept beside the module's bytecode: lakehouse/pipeline_sql.py).
manifest: $(MANIFEST)
	@$(PY) -c "from ecomm_assets.lakehouse.pipeline_sql import keep_parsed_pipeline; keep_parsed_pipeline()"
$(MANIFEST): $(VENV)/.installed dbt_project/dbt_project.yml $(shell find dbt_project/models dbt_project/macros dbt_project/tests -type f)
	$(PY) -m ecomm_assets.metrics.project

instance:
	mkdir -p $(DAGSTER_HOME)
	cp ecomm_assets/instance/local.yaml $(DAGSTER_HOME)/dagster.yaml

run: install manifest instance
	@$(if $(DAYS),$(FIRST_DAY) $(PY) -m ecomm_assets.partitions $(DAYS))
	@$(PY) -m ecomm_assets.local_stack up seed
	@$(FIRST_DAY) $(PY) -m ecomm_assets.local_stack replay build $(DAYS) summary
	@echo "\nBrowse the lineage, runs and checks: make dev, then open http://127.0.0.1:$(PORT)"

# Ctrl-C stops the UI: dagster dev shuts down, and the recipe ends as a success, so make
# reports no error.
dev: install manifest instance
	@$(PY) -m ecomm_assets.local_stack up
	@trap 'exit 0' INT; $(FIRST_DAY) ECOMM_DAGSTER_URL=$${ECOMM_DAGSTER_URL:-http://127.0.0.1:$(PORT)} \
	  $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p $(PORT)

start: install
	@$(PY) -m ecomm_assets.local_stack up

stop:
	-@[ -x $(PY) ] && $(PY) -m ecomm_assets.local_stack down

# The test modules run in parallel, one worker per core, each module on one worker (its fixtures
# are built once): 2 cores take about 17 minutes instead of 24.
test: lint install manifest
	$(BIN)/pytest -n auto --dist loadfile

lint: install
	$(BIN)/ruff check ecomm_assets ecomm_assets_tests

parity: install manifest
	$(BIN)/pytest -m parity

bench: install manifest
	$(PY) -m ecomm_assets_tests.benchmarks.run_benchmarks

clean:
	-[ -x $(PY) ] && $(PY) -m ecomm_assets.local_stack down
	rm -rf $(ECOMM_HOME) dbt_project/target dbt_project/logs $(VENV) .tmp_dagster_home_*
