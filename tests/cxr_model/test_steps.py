"""The library steps chained on a synthetic dataset, with a real MLflow store in tmp_path."""

import dataclasses
import json
import shutil

import mlflow
import pandas as pd
import pytest

from cxr_model import cli, steps
from cxr_model.stages.common import test_log
from cxr_model.config import load_config
from cxr_model.errors import ValidationFailed
from tests.conftest import mlflow_client, write_params
from tests.dicom_files import as_dicom_dataset


def _client(cfg):
    mlflow.set_tracking_uri(cfg.tracking_uri)
    return mlflow_client(cfg.tracking_uri)


@pytest.fixture
def cfg(dataset, tmp_path):
    return load_config(write_params(tmp_path / "project", dataset))


def test_steps_in_order_produce_a_tracked_registered_model(cfg, caplog):
    for name in ("ingest", "validate", "profile", "train", "evaluate", "register", "promote"):
        result = steps.STEPS[name](cfg)
        assert result["seconds"] >= 0
    lay = cfg.layout
    metrics = json.loads(lay.metrics.read_text())
    test_rows = pd.read_csv(lay.manifest).query("split == 'test'")
    c = metrics["test"]
    assert c["tp"] + c["fp"] + c["tn"] + c["fn"] == len(test_rows)
    for png in ("confusion_matrix.png", "roc.png", "precision_recall.png", "reliability.png"):
        assert (lay.evaluate_dir / png).is_file()
    for split, count in (("val", metrics["counts"]["val"]), ("test", len(test_rows))):
        assert sum(b["count"] for b in metrics["calibration"][split]["bins"]) == count
    by_type = metrics["by_type"]["test"]  # the synthetic names carry both types
    assert set(by_type) == {"bacteria", "virus"}
    assert sum(g["count"] for g in by_type.values()) == (test_rows["label"] == "PNEUMONIA").sum()
    assert lay.training_curves.is_file()
    summary = json.loads(lay.train_summary.read_text())
    assert summary["ensemble_members"] == 1 and summary["member_best_epochs"] == [summary["best_epoch"]]

    reg = json.loads(lay.registration.read_text())
    client = _client(cfg)
    run = client.get_run(reg["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == "1"
    shift = pd.read_csv(lay.split_shift).set_index(["split", "group", "statistic"])["ks"]
    assert run.data.metrics["split_shift_test_NORMAL_detail_ks"] == pytest.approx(shift[("test", "NORMAL", "detail")])
    assert run.data.metrics["split_shift_val_all_brightness_ks"] == pytest.approx(shift[("val", "all", "brightness")])
    assert run.data.tags["cxr.dataset_fingerprint"] == json.loads(lay.ingest_summary.read_text())["fingerprint"]
    assert run.data.metrics["test_auc"] == pytest.approx(c["auc"])
    assert run.data.metrics["calibration_test_brier"] == pytest.approx(metrics["calibration"]["test"]["brier"])
    assert run.data.metrics["by_type_test_virus_sensitivity"] == pytest.approx(by_type["virus"]["sensitivity"])
    assert run.data.metrics["threshold_ci95_high"] == pytest.approx(metrics["threshold"]["ci95"]["high"])
    assert run.data.metrics["test_ci95_auc_low"] == pytest.approx(metrics["test_ci95"]["auc"]["low"])
    assert run.data.tags["cxr.test_ci95_resampled"] == metrics["test_ci95_resampled"]
    assert len(client.get_metric_history(reg["run_id"], "val_auc")) == 1  # one per epoch
    artifacts = {a.path for a in client.list_artifacts(reg["run_id"], "evaluation")}
    assert "evaluation/confusion_matrix.png" in artifacts and "evaluation/roc.png" in artifacts
    version = client.get_model_version(cfg.mlflow.registered_model, reg["version"])
    assert float(version.tags["threshold"]) == pytest.approx(metrics["threshold"]["threshold"])
    assert version.run_id == reg["run_id"]
    assert str(client.get_model_version_by_alias("cxr-pneumonia", "champion").version) == reg["version"]
    # The run's description in the MLflow UI: what became of the version, the test figures.
    note = client.get_run(reg["run_id"]).data.tags["mlflow.note.content"]
    assert note.startswith(f"**Version {reg['version']} promoted to champion.** passes gates")
    assert f"auc {c['auc']:.3f} ({metrics['test_ci95']['auc']['low']:.3f}–" in note

    # A second version that fails a gate is registered but the champion stays.
    strict = dataclasses.replace(cfg, promote=dataclasses.replace(cfg.promote, min_val_auc=1.01))
    second = steps.register(strict)
    outcome = steps.promote(strict)
    assert second["version"] != reg["version"] and not outcome["promoted"]
    assert "< gate 1.01" in outcome["reasons"][0]
    # The same model again: the paired interval of the AUC difference sits at zero.
    paired = outcome["comparison"]["difference_ci95"]
    assert paired == pytest.approx({"difference": 0.0, "low": 0.0, "high": 0.0}, abs=1e-4)
    assert "95 % CI" in outcome["reasons"][-1] and "over resampled patients" in outcome["reasons"][-1]
    assert str(client.get_model_version_by_alias("cxr-pneumonia", "champion").version) == reg["version"]
    assert client.get_model_version("cxr-pneumonia", second["version"]).tags["promotion.decision"] == "rejected"
    note = client.get_run(second["run_id"]).data.tags["mlflow.note.content"]
    assert note.startswith(f"**Version {second['version']} not promoted.** validation AUC")
    assert f"Champion version {reg['version']}: no films of new patients since it was trained." in note

    # The shortcut gate reads the evaluate step's probes: set just under the largest, it names it.
    ratios = {k: v["normal_ratio"] for k, v in metrics["val_probes"].items() if k != "as_is"}
    largest = max(ratios, key=ratios.get)
    leaning = dataclasses.replace(cfg, promote=dataclasses.replace(cfg.promote, max_probe_ratio=0.99 * ratios[largest]))
    steps.register(leaning)
    outcome = steps.promote(leaning)
    assert not outcome["promoted"] and any(f"shortcut probe {largest}:" in r for r in outcome["reasons"])
    assert str(client.get_model_version_by_alias("cxr-pneumonia", "champion").version) == reg["version"]

    # A blind experiment silences the evaluate lines that quote the test split, and only those.
    def evaluate_log(blind: bool) -> list[str]:
        caplog.clear()
        test_log.disabled = blind
        try:
            with caplog.at_level("INFO"):
                steps.evaluate(cfg)
        finally:
            test_log.disabled = False
        return [r.getMessage() for r in caplog.records if r.name.startswith("cxr")]

    seen, blind = evaluate_log(blind=False), evaluate_log(blind=True)
    assert any("test AUC" in m for m in seen) and any("validation AUC" in m for m in blind)
    assert not any("test" in m for m in blind)


def test_clones_of_one_project_at_different_places_write_the_same_ingest_and_validate_files(dataset, tmp_path):
    """DVC hashes these files and train depends on them: a clone's own path inside would make
    each clone's outputs differ from the committed dvc.lock, and retrain for nothing."""
    written = []
    for clone in ("alice/cxr", "team/bob/cxr"):
        project = tmp_path / clone
        cfg = load_config(write_params(project, shutil.copytree(dataset, project / "landing")))
        steps.STEPS["ingest"](cfg)
        steps.STEPS["validate"](cfg)
        lay = cfg.layout
        written.append([f.read_bytes() for f in (lay.manifest, lay.ingest_summary, lay.validation_result)])
    assert json.loads(written[0][1])["source"] == "landing"
    assert written[0] == written[1]


def test_failed_validation_records_a_failed_run_and_registers_nothing(cfg, dataset, capsys):
    (dataset / "test" / "NORMAL" / "IM-0777-0001.jpeg").write_bytes(b"\xff\xd8\xff broken")
    assert cli.main(["--params", str(cfg.root / "params.yaml"), "ingest"]) == 0
    with pytest.raises(ValidationFailed, match="every file decodes as an image"):
        steps.validate(cfg)
    client = _client(cfg)
    runs = client.search_runs([client.get_experiment_by_name(cfg.mlflow.experiment).experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]
    assert runs[0].data.tags["cxr.failed_step"] == "validate"
    assert "IM-0777-0001.jpeg" in runs[0].data.tags["cxr.error"]
    assert client.search_registered_models() == []


def test_cli_prints_one_sentence_for_a_missing_landing_folder(tmp_path, capsys):
    params = write_params(tmp_path / "p", tmp_path / "does-not-exist")
    assert cli.main(["--params", str(params), "ingest"]) == 1
    err = capsys.readouterr().err
    assert f"cxr ingest: landing folder not found: {tmp_path / 'does-not-exist'}" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("command, first", [("register", "ingest"), ("promote", "register")])
def test_cli_names_the_step_to_run_first_when_an_input_is_missing(tmp_path, capsys, command, first):
    params = write_params(tmp_path / "p", tmp_path / "data")
    assert cli.main(["--params", str(params), command]) == 1
    err = capsys.readouterr().err
    assert f"cxr {command}: " in err and f"(run the {first} step first)" in err
    assert "Traceback" not in err


def test_retrain_decision_skips_only_the_champion_data_or_a_rejected_repeat(tmp_path):
    """The scheduled retrain's skip rule, on a registry of versions tagged as the flow tags them."""
    cfg = load_config(write_params(tmp_path / "project", tmp_path / "landing"))
    client = _client(cfg)
    name = cfg.mlflow.registered_model
    assert steps.retrain_decision(cfg, "data-a") == (True, "no champion yet")
    client.create_registered_model(name)

    def version(data: str, settings: str, decision: str) -> str:
        tags = {"dataset_fingerprint": data, "settings_fingerprint": settings, "promotion.decision": decision}
        return str(client.create_model_version(name, source=str(tmp_path), tags=tags).version)

    version("data-a", cfg.settings_fingerprint(), "rejected")
    train, why = steps.retrain_decision(cfg, "data-a")
    assert not train and why.startswith("version 1 was trained on this data with these settings")
    changed = dataclasses.replace(cfg, raw={**cfg.raw, "train": {**cfg.raw["train"], "seed": 7}})
    assert steps.retrain_decision(changed, "data-a") == (True, "no champion yet")
    assert steps.retrain_decision(cfg, "data-b") == (True, "no champion yet")

    champ = version("data-b", "other-settings", "promoted")
    client.set_registered_model_alias(name, "champion", champ)
    assert steps.retrain_decision(cfg, "data-b") == (
        False, "data unchanged since the champion (version 2) was trained")
    assert steps.retrain_decision(cfg, "data-c") == (True, "new data")


def test_a_landing_folder_of_dicom_films_trains_and_evaluates(dataset, tmp_path):
    """A site's own DICOM export (files named by UID) goes through the same steps as the JPEGs."""
    landing = tmp_path / "dicom"
    as_dicom_dataset(dataset, landing)
    cfg = load_config(write_params(tmp_path / "dicom-project", landing))
    for name in ("ingest", "validate", "profile", "train", "evaluate"):
        steps.STEPS[name](cfg)
    manifest = pd.read_csv(cfg.layout.manifest, dtype=str)
    assert set(manifest["mode"]) == {"DICOM"} and manifest["patient_id"].str.startswith("dcm-").all()
    assert json.loads(cfg.layout.validation_result.read_text())["success"]
    metrics = json.loads(cfg.layout.metrics.read_text())
    assert sum(metrics["test"][k] for k in ("tp", "fp", "tn", "fn")) == (manifest["split"] == "test").sum()
