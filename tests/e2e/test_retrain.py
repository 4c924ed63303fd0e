"""Scheduled retraining, champion safety, kills and concurrency, with real processes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from cxr_model.config import load_config
from tests.e2e.conftest import clean_env
from tests.conftest import ROOT, make_dataset, mlflow_client, normal_name, synthetic_xray, write_params

pytestmark = pytest.mark.e2e


def retrain(api: str, params: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.retrain", "--params", str(params), *extra],
                          cwd=ROOT, env=clean_env(api), capture_output=True, text=True, timeout=600)


def start(api: str, params: Path, *extra: str, log: Path | None = None) -> subprocess.Popen:
    out = open(log, "w") if log else subprocess.PIPE
    env = {**clean_env(api), "PREFECT_HOME": str(params.parent / "prefect-home")}
    return subprocess.Popen([sys.executable, "-m", "flows.retrain", "--params", str(params), *extra],
                            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def wait_for(log: Path, proc: subprocess.Popen, text: str, seconds: float) -> str:
    """Poll a process's log file until `text` shows up, the process ends, or time runs out."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        seen = log.read_text(errors="replace")
        if text in seen or proc.poll() is not None:
            return seen
        time.sleep(1)
    return log.read_text(errors="replace")


def add_patient(landing: Path, patient: int) -> None:
    synthetic_xray(10_000 + patient, "NORMAL").save(landing / "train" / "NORMAL" / normal_name(patient, 1))


def versions(cfg) -> list[str]:
    client = mlflow_client(cfg.tracking_uri)
    return sorted(str(v.version) for v in client.search_model_versions(f"name='{cfg.mlflow.registered_model}'"))


def champion(cfg) -> str:
    return str(mlflow_client(cfg.tracking_uri).get_model_version_by_alias(cfg.mlflow.registered_model, "champion").version)


@pytest.fixture(scope="module")
def project(tmp_path_factory, prefect_api):
    """One project with a first champion, shared by the tests below (each starts from a state
    where the last retrain has consumed all landed data, and leaves it that way)."""
    tmp = tmp_path_factory.mktemp("retrain")
    landing = make_dataset(tmp / "landing")
    # Every retrain here is promoted, so "the last retrain consumed the landed data" holds: the
    # champion-comparison margin is tested on its own (tests/cxr_model/test_promotion.py), and
    # one-epoch models on synthetic films can land either side of it.
    params = write_params(tmp / "project", landing, promote={"max_auc_drop": 1.0})
    proc = retrain(prefect_api, params)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return params, landing, load_config(params), prefect_api


def test_unchanged_data_is_a_quick_no_op_and_new_data_retrains(project):
    params, landing, cfg, api = project
    before = versions(cfg)
    assert before and champion(cfg) in before
    again = retrain(api, params)
    assert again.returncode == 0 and "nothing to do" in again.stdout + again.stderr
    assert versions(cfg) == before
    add_patient(landing, 40)
    grown = retrain(api, params)
    assert grown.returncode == 0 and "(new data)" in grown.stdout + grown.stderr
    assert len(versions(cfg)) == len(before) + 1
    # Before it trains anything, the new film measures the champion it has never met.
    promo = json.loads(cfg.layout.promotion.read_text())
    arrived, old = promo["comparison"]["on_arrivals"], promo["previous_champion"]
    assert (arrived["films"], arrived["patients"], arrived["pneumonia"]) == (1, 1, 0)
    assert set(arrived["metrics"]) == {"threshold", "specificity", "accuracy"}
    assert f"champion version {old} on the 1 film of 1 new patient (0 PNEUMONIA)" in grown.stdout + grown.stderr
    client = mlflow_client(cfg.tracking_uri)
    assert client.get_model_version(cfg.mlflow.registered_model, old).tags[f"arrivals.v{promo['version']}"] \
        .startswith(f"champion version {old} on the 1 film")
    run = client.get_run(client.get_model_version(cfg.mlflow.registered_model, promo["version"]).run_id)
    assert run.data.metrics["champion_on_arrivals_films"] == 1 and run.info.status == "FINISHED"
    # ... and the film is set against the champion's training films (one NORMAL film: no class differs
    # for certain, but each distance is logged).
    assert set(arrived["film_shift"]["ks"]) == {"all", "NORMAL"}
    assert run.data.metrics["champion_on_arrivals_film_shift_ks_NORMAL_detail"] == \
        pytest.approx(arrived["film_shift"]["ks"]["NORMAL"]["detail"])


def test_sigkill_mid_epoch_leaves_the_champion_and_the_next_run_completes(project):
    params, landing, cfg, api = project
    before, champ = versions(cfg), champion(cfg)
    raw = params.read_text().replace("epochs: 1", "epochs: 400")
    params.write_text(raw)
    log = params.parent / "killed.log"
    proc = start(api, params, "--force", log=log)
    seen = wait_for(log, proc, "Epoch 3/400", 300)
    assert "Epoch 3/400" in seen, seen[-2000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)

    client = mlflow_client(cfg.tracking_uri)
    exp = client.get_experiment_by_name("cxr-pneumonia")
    open_runs = client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'")
    assert len(open_runs) == 1
    assert versions(cfg) == before and champion(cfg) == champ

    params.write_text(raw.replace("epochs: 400", "epochs: 1"))
    after = retrain(api, params, "--force")
    assert after.returncode == 0, after.stdout[-2000:] + after.stderr[-2000:]
    killed = client.get_run(open_runs[0].info.run_id)
    assert killed.info.status == "KILLED" and killed.data.tags["cxr.status"] == "killed"
    assert len(versions(cfg)) == len(before) + 1


def test_two_retrains_at_once_do_not_collide(project):
    params, landing, cfg, api = project
    client = mlflow_client(cfg.tracking_uri)
    experiment = client.get_experiment_by_name("cxr-pneumonia").experiment_id
    before, runs_before = versions(cfg), {r.info.run_id for r in client.search_runs([experiment])}
    add_patient(landing, 41)
    first, second = start(api, params), start(api, params)
    outs = [p.communicate(timeout=600)[0] for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outs[0][-2000:] + outs[1][-2000:]
    assert sum("(new data)" in o for o in outs) == 1, outs[0][-3000:] + outs[1][-3000:]
    assert sum("nothing to do" in o for o in outs) == 1
    assert len(versions(cfg)) == len(before) + 1
    new_runs = [r for r in client.search_runs([experiment]) if r.info.run_id not in runs_before]
    assert [r.info.status for r in new_runs] == ["FINISHED"]


def test_a_rejected_version_is_not_trained_again_on_the_same_data(tmp_path, prefect_api):
    """A scheduled retrain after a rejected candidate, with nothing new landed, would train the
    same model again: it is skipped."""
    landing = make_dataset(tmp_path / "landing")
    params = write_params(tmp_path / "project", landing, promote={"min_val_auc": 1.01})  # rejects all
    cfg = load_config(params)
    first = retrain(prefect_api, params)
    assert first.returncode == 0 and "(no champion yet)" in first.stdout + first.stderr
    client = mlflow_client(cfg.tracking_uri)
    assert versions(cfg) == ["1"]
    assert client.get_model_version(cfg.mlflow.registered_model, "1").tags["promotion.decision"] == "rejected"
    again = retrain(prefect_api, params)
    out = again.stdout + again.stderr
    assert again.returncode == 0 and "nothing to do" in out and "version 1 was trained on this data" in out
    assert versions(cfg) == ["1"]
    # That a changed setting or new data trains again: test_steps.py, on the decision itself.


def test_served_deployment_fires_on_its_schedule(tmp_path):
    """Without PREFECT_API_URL, `--serve` starts a Prefect server of its own and stops it after."""
    landing = make_dataset(tmp_path / "landing")
    params = write_params(tmp_path / "project", landing)
    log = tmp_path / "serve.log"
    proc = start(None, params, "--serve", "--interval", "5", log=log)
    try:
        seen = wait_for(log, proc, "nothing to do", 300)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    api = re.search(r"starting a Prefect server on (\S+/api)", seen)
    assert api, seen[-3000:]
    with pytest.raises(OSError):  # the server is gone with the process that started it
        urllib.request.urlopen(api.group(1) + "/health", timeout=5)
    ended = log.read_text()
    assert "was killed" not in ended, ended[-2000:]
    assert f"PREFECT_API_URL={api.group(1)}" in load_config(params).layout.prefect_server_log.read_text()
    # The first scheduled run trains the first champion; a later one finds nothing new.
    assert "(no champion yet)" in seen and "nothing to do" in seen, seen[-3000:]
    # Runs falling due every 5 s while the first one trains wait for it instead of piling up.
    running: set[str] = set()
    for name, event in re.findall(r"Flow run '([\w-]+)' - (Beginning flow run|Finished in state)", seen):
        if event.startswith("Beginning"):
            assert not running, f"{name} started while {running} still ran:\n{seen[-3000:]}"
            running.add(name)
        else:
            running.discard(name)
    assert champion(load_config(params)) == "1"
