import shutil

import numpy as np
import pandas as pd
import pytest

from cxr_model import data
from cxr_model.errors import DataError
from tests.dicom_files import as_dicom_dataset, dicom_bytes
from tests.conftest import make_dataset, normal_name, pneumonia_name, synthetic_xray


def _manifest(source, tmp_path=None, fraction=0.25, seed=1):
    index = tmp_path / "index.csv" if tmp_path else None
    return data.build_manifest(source, (".jpeg", ".jpg", ".png"), fraction, seed, 10_000_000, index)


@pytest.mark.parametrize(
    "name, patient",
    [
        ("person1411_bacteria_3591.jpeg", "person1411"),
        ("person512_virus_1029.jpeg", "person512"),
        ("IM-0604-0001.jpeg", "IM-0604"),
        ("IM-0011-0001-0002.jpeg", "IM-0011"),
        ("NORMAL2-IM-1266-0001.jpeg", "NORMAL2-IM-1266"),
        ("scan_42.png", "scan_42"),
    ],
)
def test_patient_id_from_kermany_names(name, patient):
    assert data.patient_id(f"train/X/{name}") == patient


@pytest.mark.parametrize("name, kind", [("person1411_bacteria_3591.jpeg", "bacteria"),
                                        ("PERSON512_Virus_1029.jpeg", "virus"),
                                        ("IM-0604-0001.jpeg", ""), ("person3_scan.png", "")])
def test_pneumonia_type_from_kermany_names(name, kind):
    assert data.pneumonia_type(f"test/PNEUMONIA/{name}") == kind


def test_manifest_has_one_row_per_image_with_all_facts(dataset):
    manifest, duplicates = _manifest(dataset)
    assert len(manifest) == 2 * (12 + 12) * 1 + 2 * (5 + 5)  # 2 images per patient
    assert list(manifest.columns) == data.MANIFEST_COLUMNS
    assert set(manifest["split"]) == {"train", "val", "test"}
    row = manifest.iloc[0]
    assert len(row.sha256) == 64 and row.width == 48 and row.height == 48 and row["mode"] == "L"
    assert duplicates.empty


def test_validation_split_keeps_patients_together_and_is_stratified(tmp_path):
    source = make_dataset(tmp_path / "d", normal_patients=40, pneumonia_patients=40, images_per_patient=3)
    manifest, _ = _manifest(source, fraction=0.2)
    pool = manifest[manifest["split"] != "test"]
    per_patient = pool.groupby("patient_id")["split"].nunique()
    assert per_patient.max() == 1
    for label in data.LABELS:
        share = (pool[pool["label"] == label]["split"] == "val").mean()
        assert 0.15 <= share <= 0.3


def test_split_is_seeded_and_stable_when_new_patients_arrive(tmp_path):
    source = make_dataset(tmp_path / "d", normal_patients=30, pneumonia_patients=30)
    first, _ = _manifest(source)
    again, _ = _manifest(source)
    assert first.equals(again)
    folder = source / "train" / "NORMAL"
    for p in range(31, 34):
        synthetic_xray(900 + p, "NORMAL").save(folder / normal_name(p, 1))
    grown, _ = _manifest(source)
    before = first.set_index("path")["split"]
    after = grown.set_index("path").loc[before.index, "split"]
    assert (before != after).sum() <= 4  # only patients at the class boundary may move


def test_duplicates_are_dropped_within_split_and_from_train_when_in_test(dataset):
    train_normal = dataset / "train" / "NORMAL"
    shutil.copy(train_normal / normal_name(1, 1), train_normal / normal_name(50, 1))
    test_file = dataset / "test" / "PNEUMONIA" / pneumonia_name(1, 1)
    shutil.copy(test_file, dataset / "train" / "PNEUMONIA" / pneumonia_name(77, 1))
    manifest, duplicates = _manifest(dataset)
    assert set(duplicates["reason"]) == {"duplicate within train", "same file in test"}
    assert "train/PNEUMONIA/" + pneumonia_name(77, 1) in set(duplicates["dropped_path"])
    assert manifest.groupby("sha256")["split"].nunique().max() == 1
    assert not manifest.duplicated("sha256").any()


def test_source_val_folder_is_folded_into_train_before_the_split(dataset, caplog):
    for label, namer in (("NORMAL", normal_name), ("PNEUMONIA", pneumonia_name)):
        (dataset / "val" / label).mkdir(parents=True)
        synthetic_xray(5000 + len(label), label).save(dataset / "val" / label / namer(99, 1))
    with caplog.at_level("INFO", logger="cxr"):
        manifest, _ = _manifest(dataset)
    assert "folded into train" in caplog.text
    folded = manifest[manifest["path"].str.startswith("val/")]
    assert len(folded) == 2 and set(folded["split"]) <= {"train", "val"}


def test_unreadable_files_are_recorded_not_fatal(dataset):
    (dataset / "train" / "NORMAL" / "IM-0999-0001.jpeg").write_bytes(b"")
    manifest, _ = _manifest(dataset)
    bad = manifest[manifest["error"] != ""]
    assert bad["path"].tolist() == ["train/NORMAL/IM-0999-0001.jpeg"]
    assert bad["error"].iloc[0] == "empty file (0 bytes)"


def test_ingest_index_reuses_unchanged_files_and_rereads_changed_ones(dataset, tmp_path, caplog):
    _manifest(dataset, tmp_path)
    changed = dataset / "train" / "NORMAL" / normal_name(1, 1)
    synthetic_xray(4242, "NORMAL", size=64).save(changed)
    with caplog.at_level("INFO", logger="cxr"):
        manifest, _ = _manifest(dataset, tmp_path)
    assert "67 reused from the last ingest, 1 to read" in caplog.text
    assert manifest.set_index("path").loc["train/NORMAL/" + normal_name(1, 1), "width"] == 64


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda d: shutil.rmtree(d), "landing folder not found"),
        (lambda d: shutil.rmtree(d / "test"), "has no 'test/' folder"),
        (lambda d: (d / "train" / "NORMAL").rename(d / "train" / "normal"), "unexpected class folder 'normal'"),
        (lambda d: shutil.rmtree(d / "test" / "PNEUMONIA"), "missing class folder"),
    ],
)
def test_bad_layouts_fail_with_one_sentence_naming_the_path(dataset, breakage, message):
    breakage(dataset)
    with pytest.raises(DataError) as err:
        data.discover(dataset, (".jpeg",))
    assert message in str(err.value) and str(dataset) in str(err.value)


def test_fingerprint_changes_with_content_not_location(dataset, tmp_path):
    manifest, _ = _manifest(dataset)
    moved = tmp_path / "elsewhere"
    shutil.copytree(dataset, moved)
    assert data.manifest_fingerprint(_manifest(moved)[0]) == data.manifest_fingerprint(manifest)
    synthetic_xray(31337, "NORMAL").save(moved / "train" / "NORMAL" / normal_name(1, 1))
    assert data.manifest_fingerprint(_manifest(moved)[0]) != data.manifest_fingerprint(manifest)


def test_dicom_films_are_grouped_by_the_headers_patient_under_a_pseudonym(dataset, tmp_path, caplog):
    landing = tmp_path / "dicom"
    mrns = as_dicom_dataset(dataset, landing)
    with caplog.at_level("WARNING", logger="cxr"):
        manifest, _ = data.build_manifest(landing, (".dcm",), 0.25, 1, 10_000_000)
    assert len(manifest) == len(mrns) and set(manifest["mode"]) == {"DICOM"}
    assert (manifest["width"] == 48).all() and (manifest["error"] == "").all()
    # One pseudonym per MRN, the same for every film of a patient, and the MRN itself nowhere.
    pseudonyms = manifest.set_index("path")["patient_id"]
    by_mrn = pd.Series(mrns).groupby(pd.Series(mrns)).apply(lambda s: set(pseudonyms[s.index]))
    assert all(len(p) == 1 for p in by_mrn) and len({next(iter(p)) for p in by_mrn}) == len(by_mrn)
    assert not manifest.astype(str).apply(lambda col: col.str.contains("MRN")).any().any()
    assert manifest.loc[manifest["split"] != "test"].groupby("patient_id")["split"].nunique().max() == 1
    assert set(manifest["split"]) == {"train", "val", "test"}
    assert "carry no PatientID" not in caplog.text


def test_dicom_films_without_a_patient_id_are_their_own_patients_and_say_so(dataset, tmp_path, caplog):
    landing = tmp_path / "dicom"
    as_dicom_dataset(dataset, landing, PatientID="")
    with caplog.at_level("WARNING", logger="cxr"):
        manifest, _ = data.build_manifest(landing, (".dcm",), 0.25, 1, 10_000_000)
    assert manifest["patient_id"].nunique() == len(manifest)
    assert f"{len(manifest)} DICOM film(s) carry no PatientID" in caplog.text


def test_an_index_from_before_dicom_is_read_again_not_trusted(dataset, tmp_path, caplog):
    _manifest(dataset, tmp_path)
    index = tmp_path / "index.csv"
    pd.read_csv(index).drop(columns="patient").to_csv(index, index=False)
    with caplog.at_level("INFO", logger="cxr"):
        _manifest(dataset, tmp_path)
    assert "0 reused from the last ingest, 68 to read" in caplog.text
    assert "patient" in pd.read_csv(index).columns


def test_dicom_under_any_name_is_found_and_other_files_are_named_as_passed_over(dataset, caplog):
    uid_named = dataset / "train" / "NORMAL" / "1.2.826.0.1.3680043.8.498.1"
    uid_named.write_bytes(dicom_bytes(np.full((48, 48), 90, dtype=np.uint8), PatientID="MRN-7"))
    (dataset / "train" / "NORMAL" / "notes.txt").write_text("not a film")
    with caplog.at_level("WARNING", logger="cxr"):
        found = {f.path for f in data.discover(dataset, (".jpeg", ".dcm"))}
    assert "train/NORMAL/1.2.826.0.1.3680043.8.498.1" in found and "train/NORMAL/notes.txt" not in found
    assert "passed over 1 file(s)" in caplog.text and "train/NORMAL/notes.txt" in caplog.text
    # Without a DICOM suffix among the extensions, DICOM content is not looked for.
    assert "train/NORMAL/1.2.826.0.1.3680043.8.498.1" not in {f.path for f in data.discover(dataset, (".jpeg",))}
