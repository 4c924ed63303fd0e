import json

import pandas as pd
import pytest

from cxr_model import data, validation
from cxr_model.config import ValidateConfig


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
    assert saved["success"] and len(saved["checks"]) == len(validation.rules(ValidateConfig(), films=False))
    assert (tmp_path / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html").is_file()


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
