"""`dvc repro` of dvc.yaml in a throwaway git repository, on a tiny synthetic dataset."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, make_dataset, mlflow_client, write_params

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent


def sh(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CXR_", "MLFLOW_"))}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, f"{' '.join(args)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def ran_stages(proc: subprocess.CompletedProcess) -> set[str]:
    return set(re.findall(r"Running stage '([\w-]+)'", proc.stdout + proc.stderr))


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("dvc")
    landing = make_dataset(tmp / "landing", normal_patients=10, pneumonia_patients=10)
    proj = tmp / "proj"
    proj.mkdir()
    shutil.copy(ROOT / "dvc.yaml", proj)
    shutil.copytree(ROOT / "cxr_model", proj / "cxr_model", ignore=shutil.ignore_patterns("__pycache__"))
    params = write_params(proj, landing)
    raw = yaml.safe_load(params.read_text())
    raw["data"]["landing"] = "../landing"
    raw["data"]["versioned"] = True
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    (proj / ".gitignore").write_text("artifacts/\nmlruns/\n")
    sh(proj, "git", "init", "-q")
    sh(proj, "dvc", "init", "-q")
    sh(proj, "dvc", "config", "core.analytics", "false")
    sh(proj, "dvc", "remote", "add", "-d", "storage", str(tmp / "remote"))
    sh(proj, "cxr", "import-data")
    sh(proj, "git", "add", "-A")
    sh(proj, "git", "commit", "-qm", "tiny project")
    return proj


def test_repro_runs_the_pipeline_and_logs_to_mlflow(project):
    proc = sh(project, "dvc", "repro")
    assert ran_stages(proc) == {"ingest", "validate", "profile", "train", "evaluate", "register", "promote"}
    reg = json.loads((project / "artifacts/register/registration.json").read_text())
    dvc_md5 = yaml.safe_load((project / "data/chest_xray.dvc").read_text())["outs"][0]["md5"]
    client = mlflow_client(f"sqlite:///{project / 'mlruns/mlflow.db'}")
    run = client.get_run(reg["run_id"])
    assert run.data.tags["cxr.dataset_dvc_md5"] == dvc_md5
    assert client.get_model_version("cxr-pneumonia", reg["version"]).tags["dataset_dvc_md5"] == dvc_md5
    metrics = json.loads(sh(project, "dvc", "metrics", "show", "--json").stdout)
    shown = json.dumps(metrics)
    assert "artifacts/evaluate/metrics.json" in shown and '"auc"' in shown


def test_second_repro_is_a_no_op(project):
    proc = sh(project, "dvc", "repro")
    assert ran_stages(proc) == set()
    assert "Data and pipelines are up to date" in proc.stdout


def test_changing_a_training_parameter_reruns_only_downstream_stages(project):
    params = project / "params.yaml"
    raw = yaml.safe_load(params.read_text())
    raw["train"]["epochs"] = 2
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    proc = sh(project, "dvc", "repro")
    assert ran_stages(proc) == {"train", "evaluate", "register", "promote"}
    assert "train.epochs" in sh(project, "dvc", "params", "diff").stdout


def test_dvc_experiment_run_with_a_set_parameter_is_listed(project):
    # A threshold-rule parameter: evaluate reruns, training does not; register and promote rerun
    # only if evaluate's outputs changed (this test runs before new data lands).
    proc = sh(project, "dvc", "exp", "run", "-S", "evaluate.youden_tolerance=0.03")
    ran = ran_stages(proc)
    assert "evaluate" in ran and ran <= {"evaluate", "register", "promote"}
    shown = json.loads(sh(project, "dvc", "exp", "show", "--json").stdout)
    experiments = [exp for entry in shown for exp in (entry.get("experiments") or [])]
    assert experiments, shown
    revs = [r for exp in experiments for r in exp.get("revs", [])]
    tolerances = [r["data"]["params"]["params.yaml"]["data"]["evaluate"]["youden_tolerance"] for r in revs]
    assert 0.03 in tolerances


def test_new_landing_images_become_a_new_dataset_version(project):
    before = yaml.safe_load((project / "data/chest_xray.dvc").read_text())["outs"][0]["md5"]
    make_dataset(project.parent / "landing", normal_patients=11, pneumonia_patients=10, seed=7)
    out = json.loads(sh(project, "cxr", "import-data").stdout)
    assert out["changed"] and out["previous"] == before and out["version"] != before
    assert ran_stages(sh(project, "dvc", "repro", "ingest")) == {"ingest"}
