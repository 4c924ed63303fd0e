"""The arrival demo: batches of held-back patients land, each retrain measures the demo's
champion on them, and the project's own model is never touched."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cxr_model import tracking
from cxr_model.config import load_config
from tests.conftest import ROOT, make_dataset, mlflow_client, write_params
from tests.e2e.conftest import clean_env

pytestmark = pytest.mark.e2e


def test_demo_registers_its_own_model_and_measures_its_champion_on_each_arrival(tmp_path, prefect_api):
    source = make_dataset(tmp_path / "landing")
    params = write_params(tmp_path / "project", source)
    cfg = load_config(params)
    env = {**clean_env(prefect_api), "CXR_DATA": str(source)}  # a user's own copy, named by the variable
    demo = f"{cfg.mlflow.registered_model}-demo"
    tracking.connect(cfg)  # a model the last demo left behind, with one version
    tracking.client(cfg).create_registered_model(demo)
    tracking.client(cfg).create_model_version(demo, (tmp_path / "old-model").as_uri())
    proc = subprocess.run([sys.executable, "-m", "flows.demo_arrival", "--params", str(params), "--batches", "1",
                           "--quick", "--workdir", str(tmp_path / "demo")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    client = mlflow_client(cfg.tracking_uri)
    # The last demo's model is gone, and each release is new data, so each trains (had the flows
    # read $CXR_DATA, the full copy, the later release would have been "nothing to do"): the
    # initial data and one batch (one arrival is enough to measure; each more costs a flow).
    assert f"removed the last demo's registered model {demo}" in out
    assert len(client.search_model_versions(f"name='{demo}'")) == 2
    assert not client.search_registered_models(f"name='{cfg.mlflow.registered_model}'")
    assert client.get_model_version_by_alias(demo, "champion")
    measured = [line for line in out.splitlines() if " new patients (" in line and "since it was trained" in line]
    assert measured, out[-3000:]
    assert "experiment cxr-pneumonia-demo, model cxr-pneumonia-demo" in out
