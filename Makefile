# The two commands a fresh clone needs: `make run` (full flow on the default data) and
# `make test` (the test suite). Both create .venv from constraints.txt first.
PY := .venv/bin/python
PARAMS ?= params.yaml

.PHONY: setup run test test-unit test-e2e benchmark ui clean

setup:
	@bash scripts/setup_env.sh

run: setup
	$(PY) -m flows.training --params $(PARAMS)

test: setup
	$(PY) -m pytest

test-unit: setup
	$(PY) -m pytest -m "not e2e"

test-e2e: setup
	$(PY) -m pytest -m e2e

benchmark: setup
	$(PY) -m benchmarks.full_flow --params $(PARAMS)

ui: setup
	.venv/bin/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db --port 5000

clean:
	rm -rf artifacts
