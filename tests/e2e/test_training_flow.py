"""The Prefect training flow, run as a user runs it, on a small real subset of the X-rays."""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest

from cxr_model.config import load_config
from cxr_model.processes import free_port
from tests.conftest import REAL_DATA, mlflow_client
from tests.e2e.conftest import _small, real_subset, run_flow

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not REAL_DATA.is_dir(), reason=f"real data not found at {REAL_DATA}"),
]


def test_flow_tracks_and_registers_the_model(finished):
    cfg, proc = finished
    reg = json.loads(cfg.layout.registration.read_text())
    mlflow.set_tracking_uri(cfg.tracking_uri)
    client = mlflow_client(cfg.tracking_uri)
    run = client.get_run(reg["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params == cfg.flat_params()
    assert len(client.get_metric_history(reg["run_id"], "val_auc")) == cfg.train.epochs * cfg.model.ensemble
    assert len(client.get_metric_history(reg["run_id"], "train_loss")) == cfg.train.epochs * cfg.model.ensemble
    for name in ("test_auc", "test_accuracy", "test_sensitivity", "test_specificity", "test_at_0_5_accuracy",
                 "val_probes_contrast_60_normal_ratio", "val_probes_corners_masked_auc",
                 "val_aspect_jitter_auc"):
        assert name in run.data.metrics
    logged = {a.path for folder in ("evaluation", "training", "profile", "validation")
              for a in client.list_artifacts(reg["run_id"], folder)}
    for plot in ("evaluation/confusion_matrix.png", "evaluation/roc.png", "evaluation/precision_recall.png",
                 "evaluation/reliability.png",
                 "evaluation/validation_hardest.png", "evaluation/validation_probes.png",
                 "training/training_curves.png", "profile/class_distribution.png", "validation/closest_pairs.png"):
        assert plot in logged
    version = client.get_model_version("cxr-pneumonia", reg["version"])
    assert version.run_id == reg["run_id"] and "threshold" in version.tags
    assert "registered cxr-pneumonia version" in proc.stdout + proc.stderr
    metrics = json.loads(cfg.layout.metrics.read_text())
    ci = metrics["threshold"]["ci95"]
    assert f"threshold over validation resamples: {ci['low']:.3f}-{ci['high']:.3f}" in proc.stdout + proc.stderr
    auc = metrics["test_ci95"]["auc"]
    assert (f"95 % intervals, redrawing {metrics['test_ci95_resampled']}: auc {auc['low']:.4f}-{auc['high']:.4f}"
            in proc.stdout + proc.stderr)


def test_flow_metrics_are_consistent_and_splits_do_not_leak(finished):
    cfg, _ = finished
    manifest = pd.read_csv(cfg.layout.manifest, keep_default_na=False)
    metrics = json.loads(cfg.layout.metrics.read_text())
    cm = metrics["test"]
    assert cm["tp"] + cm["fp"] + cm["tn"] + cm["fn"] == (manifest["split"] == "test").sum()
    train_patients = set(manifest.loc[manifest["split"] == "train", "patient_id"])
    val_patients = set(manifest.loc[manifest["split"] == "val", "patient_id"])
    assert val_patients and not (train_patients & val_patients)
    assert 0.0 <= metrics["test"]["auc"] <= 1.0
    probes = metrics["val_probes"]  # validation only: the unchanged films are the validation scores
    assert probes["as_is"]["auc"] == pytest.approx(metrics["val"]["auc"]) and probes["as_is"]["normal_ratio"] == 1.0
    assert {"contrast_60", "crop_80", "corners_masked"} <= set(probes)


def test_flow_stops_with_one_sentence_on_a_missing_landing_folder(tmp_path, prefect_api):
    params = _small(tmp_path, tmp_path / "nowhere")
    proc = run_flow(params, prefect_api)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last == f"cxr training flow stopped: landing folder not found: {tmp_path / 'nowhere'} " \
                   "(set CXR_DATA or data.landing)"
    cfg = load_config(params)
    assert not cfg.layout.registration.exists()


def test_flow_stops_with_one_sentence_when_the_named_prefect_server_does_not_answer(tmp_path):
    silent = f"http://127.0.0.1:{free_port()}/api"  # e.g. a team stack that is down
    proc = run_flow(_small(tmp_path, tmp_path / "nowhere"), silent)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(
        f"cxr training flow stopped: the Prefect API at {silent} does not answer (")
    assert "Traceback" not in proc.stderr


def test_flow_stops_before_training_on_an_unreadable_image(tmp_path, prefect_api):
    source = real_subset(tmp_path / "landing", train_per_class=30, test_per_class=10)
    (source / "train" / "PNEUMONIA" / "person9999_virus_1.jpeg").write_bytes(b"GIF89a not really")
    params = _small(tmp_path, source)
    proc = run_flow(params, prefect_api)
    assert proc.returncode == 1
    assert "every file decodes as an image" in proc.stderr
    assert "person9999_virus_1.jpeg" in proc.stderr
    cfg = load_config(params)
    assert not cfg.layout.model.exists()
    client = mlflow_client(cfg.tracking_uri)
    assert client.search_registered_models() == []
    failed = client.search_runs([client.get_experiment_by_name("cxr-pneumonia").experiment_id])
    assert [r.data.tags["cxr.failed_step"] for r in failed] == ["validate"]
