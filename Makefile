# The two commands a fresh clone needs: `make run` (full flow on the default data) and
# `make test` (the test suite). Both create .venv from constraints.txt first.
PY := .venv/bin/python
PARAMS ?= params.yaml

.PHONY: setup data run test test-unit test-e2e ui clean

setup:
	@bash scripts/setup_env.sh

data: setup
	.venv/bin/cxr import-data

run: setup
	$(PY) -m flows.training --params $(PARAMS)

test: setup
	$(PY) -m pytest

test-unit: setup
	$(PY) -m pytest -m "not e2e"

test-e2e: setup
	$(PY) -m pytest -m e2e

ui: setup
	.venv/bin/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db --port 5000

clean:
	rm -rf artifacts
