"""The team stack with real components on loopback: PostgreSQL (from the system packages), an
MLflow server on it, a Prefect server and a worker. A retrain deployment runs on the worker and
trains on a tiny real subset; everything it tracked is read back through the MLflow REST API;
a sweep fans out on a local Dask cluster."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from cxr_model import stack
from cxr_model.config import load_config
from tests.conftest import ROOT
from tests.e2e.conftest import _small, clean_env, free_port, real_subset

pytestmark = [pytest.mark.e2e, pytest.mark.team]
CXR = str(Path(sys.executable).with_name("cxr"))


def _service_states(params: Path) -> list[str]:
    """The state column of `cxr stack status` for its four services."""
    status = subprocess.run([CXR, "--params", str(params), "stack", "status"], cwd=ROOT, env=clean_env(),
                            capture_output=True, text=True, timeout=60)
    return [line.split()[1] for line in status.stdout.splitlines()[:4]]


def _get(url: str) -> Any:
    """The JSON body of a GET: an object, or a list for the listing endpoints."""
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


def _post(url: str, payload: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    """A project on a tiny real subset and the whole stack started for it with `cxr stack up`."""
    tmp = tmp_path_factory.mktemp("team")
    params = _small(tmp, real_subset(tmp / "landing", train_per_class=30, test_per_class=10))
    # PostgreSQL runs as the postgres user: its state must sit where that user can reach.
    state = Path(tempfile.mkdtemp(prefix="cxr-team-"))
    state.chmod(0o755)
    raw = yaml.safe_load(params.read_text())
    raw["team"].update(state_dir=str(state), postgres_port=free_port(), mlflow_port=free_port(),
                       prefect_port=free_port(), work_pool="cxr-test")
    raw["sweep"].update(space={"train.learning_rate": [0.001, 0.003]}, dask={"n_workers": 2})
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = load_config(params)
    # Launched as a shell's background job or a CI step may be: with SIGINT ignored, which the
    # servers would inherit (the worker then never finishes a graceful stop).
    up = subprocess.run([CXR, "--params", str(params), "stack", "up"], cwd=ROOT, env=clean_env(),
                        capture_output=True, text=True, timeout=600,
                        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        env = dict(line.removeprefix("export ").split("=", 1) for line in up.stdout.splitlines()
                   if line.startswith("export "))
        yield {"params": params, "cfg": cfg, "env": {**clean_env(), **env}, "state": state,
               "startup": json.loads((state / "startup.json").read_text())}
    finally:
        down = subprocess.run([CXR, "--params", str(params), "stack", "down"], cwd=ROOT, env=clean_env(),
                              capture_output=True, text=True, timeout=300)
        states = _service_states(params)
        shutil.rmtree(state, ignore_errors=True)
    # Teardown checks: every service that was up is reported stopped, with its seconds, and none
    # had to be killed.
    stopped = dict(item.split(" ", 1) for item in down.stdout.strip().removeprefix("stop seconds: ").split(", "))
    assert set(stopped) == {"postgres", "mlflow", "prefect", "worker"}, down.stdout + down.stderr[-2000:]
    assert not [name for name, how in stopped.items() if "killed" in how], down.stdout + down.stderr[-2000:]
    assert states == ["stopped"] * 4


@pytest.fixture(scope="module")
def retrained_on_worker(team):
    """Deploy the retrain flow to the pool, trigger it twice at once through the Prefect API, wait
    for the worker to finish both; the first run as the tests see it, the second beside it."""
    env, api = team["env"], team["env"]["PREFECT_API_URL"]
    # Without PREFECT_API_URL (as `make team-deploy` runs) it finds the stack's server from params.yaml.
    deploy_env = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
    deploy = subprocess.run([sys.executable, "-m", "flows.deploy", "--params", str(team["params"]), "--no-schedule"],
                            cwd=ROOT, env=deploy_env, capture_output=True, text=True, timeout=300)
    assert deploy.returncode == 0, deploy.stdout[-2000:] + deploy.stderr[-3000:]
    deployment = _get(f"{api}/deployments/name/cxr-retrain/retrain")
    assert deployment["work_pool_name"] == "cxr-test"
    # A manual trigger while a retrain is on: the deployment's limit must hold it queued.
    runs = [_post(f"{api}/deployments/{deployment['id']}/create_flow_run", {}) for _ in range(2)]
    deadline = time.time() + 600
    while True:
        runs = [_get(f"{api}/flow_runs/{run['id']}") for run in runs]
        if all(run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") for run in runs) \
                or time.time() > deadline:
            break
        time.sleep(2)
    runs.sort(key=lambda run: run["start_time"] or "9")
    history = _get(f"{api}/flow_run_states/?flow_run_id={runs[1]['id']}")
    return {**runs[0], "deployment": deployment, "second": runs[1],
            "second_states": [state["name"] for state in history]}


def test_stack_starts_every_component_and_reports_its_start_up_time(team):
    assert set(team["startup"]) == {"postgres", "mlflow", "prefect", "worker"}
    assert _service_states(team["params"]) == ["running"] * 4


def test_a_deployment_run_triggered_on_the_server_completes_on_the_worker(team, retrained_on_worker):
    run = retrained_on_worker
    worker_log = (team["state"] / "worker.log").read_text()
    assert run["state"]["type"] == "COMPLETED", worker_log[-3000:]
    assert run["work_pool_name"] == "cxr-test"
    assert run["id"] in worker_log  # the worker, not this process, picked it up
    # Prefect's own CLI works against the server (with FastAPI >= 0.151 it got 422 on filters).
    listed = subprocess.run([str(Path(sys.executable).with_name("prefect")), "deployment", "ls"], cwd=ROOT,
                            env=team["env"], capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and "cxr-retrain/retrain" in listed.stdout, listed.stderr[-2000:]


def test_a_second_triggered_retrain_waits_queued_until_the_first_has_finished(team, retrained_on_worker):
    first, second = retrained_on_worker, retrained_on_worker["second"]
    deployment = retrained_on_worker["deployment"]
    assert deployment["global_concurrency_limit"]["limit"] == team["cfg"].retrain.max_concurrent_runs == 1
    assert deployment["concurrency_options"]["collision_strategy"] == "ENQUEUE"
    worker_log = (team["state"] / "worker.log").read_text()
    assert second["state"]["type"] == "COMPLETED", worker_log[-3000:]  # queued, not dropped
    assert "AwaitingConcurrencySlot" in retrained_on_worker["second_states"]  # the server held it
    # Never two at once: the second started only after the first had ended.
    assert datetime.fromisoformat(second["start_time"]) >= datetime.fromisoformat(first["end_time"])


def test_run_metrics_artifacts_and_version_are_readable_through_the_rest_api(team, retrained_on_worker):
    mlflow = team["env"]["MLFLOW_TRACKING_URI"]
    experiment = _get(f"{mlflow}/api/2.0/mlflow/experiments/get-by-name?experiment_name=cxr-pneumonia")
    runs = _post(f"{mlflow}/api/2.0/mlflow/runs/search",
                 {"experiment_ids": [experiment["experiment"]["experiment_id"]]})["runs"]
    run = next(r for r in runs if r["info"]["run_name"].startswith("retrain-"))
    run_id = run["info"]["run_id"]
    assert run["info"]["status"] == "FINISHED"
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["mlflow.user"] and tags["cxr.host"]  # engineers' runs on one server stay attributable
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params["preprocess.image_size"] == "64"
    history = _get(f"{mlflow}/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key=val_auc")["metrics"]
    assert len(history) == 1  # one epoch
    files = {f["path"] for f in _get(f"{mlflow}/api/2.0/mlflow/artifacts/list?run_id={run_id}&path=evaluation")["files"]}
    assert "evaluation/confusion_matrix.png" in files
    query = urllib.parse.urlencode({"run_uuid": run_id, "path": "evaluation/confusion_matrix.png"})
    with urllib.request.urlopen(f"{mlflow}/get-artifact?{query}", timeout=30) as resp:
        assert resp.read(8) == b"\x89PNG\r\n\x1a\n"  # stored by the server, served back by it
    champion = _get(f"{mlflow}/api/2.0/mlflow/registered-models/alias?name=cxr-pneumonia&alias=champion")
    assert champion["model_version"]["run_id"] == run_id
    # The backend store really is PostgreSQL: the run is a row there.
    pg = team["state"] / "postgres"
    rows = subprocess.run([str(stack.postgres_bin() / "psql"), "-h", str(pg), "-p", str(team["cfg"].team.postgres_port), "-U", "cxr", "-d",
                           "mlflow", "-tAc", f"SELECT status FROM runs WHERE run_uuid = '{run_id}'"],
                          capture_output=True, text=True)
    assert rows.stdout.strip() == "FINISHED", rows.stderr


def test_cxr_predict_uses_the_champion_from_the_tracking_server(team, retrained_on_worker, tmp_path):
    image = sorted((team["cfg"].landing / "test" / "PNEUMONIA").iterdir())[0]
    out = subprocess.run([CXR, "--params", str(team["params"]), "predict", str(image), "--no-gradcam",
                          "--out", str(tmp_path)], cwd=ROOT, env=team["env"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((tmp_path / "predictions.json").read_text())
    mlflow = team["env"]["MLFLOW_TRACKING_URI"]
    champion = _get(f"{mlflow}/api/2.0/mlflow/registered-models/alias?name=cxr-pneumonia&alias=champion")
    assert summary["model"]["run_id"] == champion["model_version"]["run_id"]
    assert 0.0 <= summary["predictions"][0]["probability"] <= 1.0


def test_sweep_fans_out_on_dask_with_trials_nested_under_one_run(team, retrained_on_worker):
    out = subprocess.run([sys.executable, "-m", "flows.sweep", "--params", str(team["params"])], cwd=ROOT,
                         env=team["env"], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "distributed.scheduler" in out.stdout + out.stderr  # the trials ran on a Dask cluster
    mlflow = team["env"]["MLFLOW_TRACKING_URI"]
    experiment_id = _get(f"{mlflow}/api/2.0/mlflow/experiments/get-by-name?experiment_name=cxr-pneumonia")[
        "experiment"]["experiment_id"]
    runs = _post(f"{mlflow}/api/2.0/mlflow/runs/search", {"experiment_ids": [experiment_id]})["runs"]
    sweep = next(r for r in runs if r["info"]["run_name"].startswith("sweep-"))
    tags = {t["key"]: t["value"] for t in sweep["data"]["tags"]}
    children = [r for r in runs if {"key": "mlflow.parentRunId", "value": sweep["info"]["run_id"]}
                in r["data"]["tags"]]
    assert sorted({p["key"]: p["value"] for p in r["data"]["params"]}["train.learning_rate"]
                  for r in children) == ["0.001", "0.003"]
    best = next(r for r in children if r["info"]["run_id"] == tags["cxr.sweep.best_run_id"])
    best_auc = {m["key"]: m["value"] for m in best["data"]["metrics"]}["fit_best_val_auc"]
    assert best_auc == max({m["key"]: m["value"] for m in r["data"]["metrics"]}["fit_best_val_auc"] for r in children)
    versions = _get(f"{mlflow}/api/2.0/mlflow/model-versions/search?filter="
                    + urllib.parse.quote(f"run_id = '{best['info']['run_id']}'"))["model_versions"]
    assert len(versions) == 1  # only the chosen trial is registered
