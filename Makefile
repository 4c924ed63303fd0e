# The two commands a fresh clone needs: `make run` (full flow on the default data) and
# `make test` (the test suite). Both create .venv from constraints.txt first.
PY := .venv/bin/python
PARAMS ?= params.yaml

.PHONY: setup data run test test-unit test-e2e test-team ui serve bench-predict sweep team-up team-down team-status team-deploy clean

setup:
	@bash scripts/setup_env.sh

data: setup
	.venv/bin/cxr import-data

run: setup
	$(PY) -m flows.training --params $(PARAMS)

# Three pytest workers on two cores: with two, the suite waits on servers and subprocesses for
# a fifth of the time (1.6 of 2 cores busy); a third worker fills part of that (7-11 % less
# pytest time in two pairs of runs on the AVX2 host). --dist loadscope runs each module whole
# and in order on one worker (module fixtures, tests that build on each other).
TEST_WORKERS ?= 3
test: setup
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadscope

test-unit: setup
	$(PY) -m pytest -m "not e2e"

test-e2e: setup
	$(PY) -m pytest -m e2e

test-team: setup
	$(PY) -m pytest -m team

ui: setup
	.venv/bin/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db --port 5000

# The champion as an HTTP service (POST base64 images to /invocations); PORT=5001 by default.
PORT ?= 5001
serve: setup
	PATH="$(CURDIR)/.venv/bin:$$PATH" MLFLOW_TRACKING_URI="$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlruns/mlflow.db}" \
		.venv/bin/mlflow models serve -m "models:/cxr-pneumonia@champion" --env-manager local --host 127.0.0.1 --port $(PORT)

# A hyperparameter sweep (params.yaml sweep:) as parallel trials on Dask.
sweep: setup
	$(PY) -m flows.sweep --params $(PARAMS)

# The team stack (params.yaml team:): PostgreSQL, MLflow server, Prefect server, a worker.
team-up: setup
	.venv/bin/cxr --params $(PARAMS) stack up

team-down: setup
	.venv/bin/cxr --params $(PARAMS) stack down

team-status: setup
	.venv/bin/cxr --params $(PARAMS) stack status

# The retrain deployment on the team's work pool (runs on retrain.cron, or on demand).
team-deploy: setup
	$(PY) -m flows.deploy --params $(PARAMS)

bench-predict: setup
	$(PY) -m benchmarks.predict_speed

clean:
	rm -rf artifacts
