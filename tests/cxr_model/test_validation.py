import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxr_model import data, validation
from cxr_model.config import PredictConfig, ValidateConfig
from tests.dicom_files import as_dicom_dataset, dicom_bytes


@pytest.fixture
def manifest(dataset):
    return data.build_manifest(dataset, (".jpeg",), 0.25, 1, 10_000_000)[0]


def _cfg(**overrides):
    return ValidateConfig(**{"min_images_per_class": 2, "min_side": 32, **overrides})


def _failed(summary):
    return {c["rule"]: c for c in summary["checks"] if not c["success"]}


def test_clean_data_passes_and_writes_result_and_data_docs(manifest, tmp_path):
    summary = validation.validate_manifest(manifest, _cfg(), tmp_path)
    assert summary["success"], validation.failure_message(summary)
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["success"] and len(saved["checks"]) == len(validation.rules(ValidateConfig(), films=False, headers=False))
    docs = tmp_path / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
    assert docs.is_file() and summary["data_docs"] == str(docs)  # messages name the docs in full
    assert tmp_path / saved["data_docs"] == docs and not Path(saved["data_docs"]).is_absolute()  # the file: below itself


def test_undecodable_file_is_critical_and_named(dataset, tmp_path):
    (dataset / "train" / "NORMAL" / "IM-0999-0001.jpeg").write_text("not a jpeg")
    manifest = data.build_manifest(dataset, (".jpeg",), 0.25, 1, 10_000_000)[0]
    summary = validation.validate_manifest(manifest, _cfg(), tmp_path)
    assert not summary["success"]
    check = _failed(summary)["every file decodes as an image"]
    assert check["severity"] == "critical" and check["unexpected_count"] == 1
    assert "IM-0999-0001.jpeg (cannot decode" in check["examples"][0]
    message = validation.failure_message(summary)
    assert "training will not start" in message and "IM-0999-0001.jpeg" in message


def test_patient_in_train_and_val_is_caught(manifest, tmp_path):
    leaked = manifest.copy()
    val_patient = leaked.loc[leaked["split"] == "val", "patient_id"].iloc[0]
    leaked.loc[leaked.index[leaked["split"] == "train"][0], "patient_id"] = val_patient
    summary = validation.validate_manifest(leaked, _cfg(), tmp_path)
    assert "no patient has images in both train and val" in _failed(summary)


def test_same_file_in_two_splits_is_caught(manifest, tmp_path):
    leaked = manifest.copy()
    test_hash = leaked.loc[leaked["split"] == "test", "sha256"].iloc[0]
    leaked.loc[leaked.index[leaked["split"] == "train"][0], "sha256"] = test_hash
    failed = _failed(validation.validate_manifest(leaked, _cfg(), tmp_path))
    assert "a file (sha256) never appears in two splits" in failed


def test_class_counts_and_shares_are_gated(manifest, tmp_path):
    cfg = _cfg(min_images_per_class=1000, pneumonia_share=(0.6, 0.9))
    failed = _failed(validation.validate_manifest(manifest, cfg, tmp_path))
    counts = failed["every split holds at least 1000 images per class"]
    assert counts["unexpected_count"] == 6 and "train/NORMAL" in counts["examples"]
    assert "the pneumonia share of every split is within [0.6, 0.9]" in failed


def test_converted_modes_and_odd_aspect_are_warnings_only(manifest, tmp_path):
    odd = manifest.copy()
    odd.loc[odd.index[0], "mode"] = "RGBA"
    odd.loc[odd.index[1], ["width", "height"]] = (300, 100)
    summary = validation.validate_manifest(odd, _cfg(), tmp_path)
    assert summary["success"] and summary["warnings"] == 2
    failed = _failed(summary)
    assert all(c["severity"] == "warning" for c in failed.values())
    assert any(odd.iloc[0]["path"] in e for c in failed.values() for e in c["examples"])


def test_image_facts_counts_patient_splits_only_across_train_and_val():
    frame = pd.DataFrame({
        "path": ["a", "b", "c"], "split": ["train", "val", "test"], "label": ["NORMAL"] * 3,
        "patient_id": ["p1", "p2", "p1"], "sha256": ["x", "y", "z"], "width": [10] * 3,
        "height": [10] * 3, "mode": ["L"] * 3, "bytes": [1] * 3, "error": [""] * 3,
    })
    facts = validation.image_facts(frame)
    assert facts["patient_train_val_splits"].tolist() == [1, 1, 0]


def test_dicom_headers_that_predict_would_refuse_stop_training(dataset, tmp_path):
    landing = tmp_path / "dicom"
    mrns = as_dicom_dataset(dataset, landing)
    lateral, adult = sorted(mrns)[:2]
    pixels = np.full((48, 48), 99, dtype=np.uint8)
    (landing / lateral).write_bytes(dicom_bytes(pixels, PatientID="MRN-x", ViewPosition="LL"))
    (landing / adult).write_bytes(dicom_bytes(pixels, PatientID="MRN-y", PatientAge="045Y"))
    manifest = data.build_manifest(landing, (".dcm",), 0.25, 1, 10_000_000)[0]
    headers = validation.header_problems(manifest, landing, PredictConfig())
    assert (headers != "").sum() == 2
    summary = validation.validate_manifest(manifest, _cfg(), tmp_path / "gx", headers=headers)
    check = next(c for c in _failed(summary).values() if c["rule"].startswith("DICOM headers"))
    assert check["severity"] == "critical" and check["unexpected_count"] == 2
    assert any(lateral in e and "view position LL" in e for e in check["examples"])
    assert any(adult in e and "patient age 045Y" in e for e in check["examples"])
    # Turned off in params (an empty list, age 0), the same films pass.
    lenient = PredictConfig(dicom_views=(), max_patient_age_years=0)
    assert (validation.header_problems(manifest, landing, lenient) == "").all()


def test_jpeg_films_have_no_header_problem(manifest, dataset, tmp_path):
    headers = validation.header_problems(manifest, dataset, PredictConfig())
    assert (headers == "").all()
    assert validation.validate_manifest(manifest, _cfg(), tmp_path, headers=headers)["success"]
