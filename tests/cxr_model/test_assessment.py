import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from cxr_model import assessment
from cxr_model.errors import DataError
from tests.conftest import make_dataset
from tests.dicom_files import dicom_bytes


def test_labels_come_from_the_nearest_class_folder_at_any_depth(tmp_path):
    root = make_dataset(tmp_path / "site", normal_patients=2, pneumonia_patients=3, test_patients=1)
    (root / "train" / "pneumonia").mkdir()  # another case of the folder name counts too
    shutil.copy(next((root / "train" / "PNEUMONIA").iterdir()), root / "train" / "pneumonia" / "extra.jpeg")
    (root / "notes").mkdir()
    shutil.copy(next((root / "test" / "NORMAL").iterdir()), root / "notes" / "unlabelled.jpeg")
    # a PACS export: DICOM named by UID, no image suffix; and a text file beside it
    (root / "test" / "NORMAL" / "1.2.840.113619.2.7").write_bytes(
        dicom_bytes(np.full((64, 64), 100, np.uint8)))
    (root / "test" / "NORMAL" / "index.txt").write_text("not a film")
    files = assessment.labelled_files(root)
    by_name = files.set_index(files["path"].map(lambda p: p.split("/")[-1]))
    assert "unlabelled.jpeg" not in by_name.index and "index.txt" not in by_name.index
    assert by_name.loc["extra.jpeg", "y"] == 1
    assert by_name.loc["1.2.840.113619.2.7", "y"] == 0
    assert (files["y"] == 0).sum() == (2 + 1) * 2 + 1 and (files["y"] == 1).sum() == (3 + 1) * 2 + 1
    assert set(files.loc[files["y"] == 1, "type"]) <= {"bacteria", "virus", ""}
    assert set(files.loc[files["y"] == 0, "type"]) == {""}
    assert set(by_name.loc[["person1_bacteria_1.jpeg"], "type"]) == {"bacteria"}


def test_a_cohort_without_both_classes_or_without_a_folder_is_one_clear_sentence(tmp_path):
    root = make_dataset(tmp_path / "site", test_patients=1)
    shutil.rmtree(root / "train" / "NORMAL")
    shutil.rmtree(root / "test" / "NORMAL")
    with pytest.raises(DataError, match=f"no NORMAL images under {root}"):
        assessment.labelled_files(root)
    with pytest.raises(DataError, match="cohort folder not found"):
        assessment.labelled_files(tmp_path / "absent")
    assert assessment.cohort_name("site-b_2026.v1") == "site-b_2026.v1"
    for bad in ("site b", "../up", "a/b", "", "-x"):
        with pytest.raises(DataError, match="pass --name"):
            assessment.cohort_name(bad)


def test_the_fingerprint_follows_the_films_and_labels_not_where_they_sit(tmp_path):
    root = make_dataset(tmp_path / "a", normal_patients=2, pneumonia_patients=2, test_patients=1)
    moved = shutil.copytree(root, tmp_path / "elsewhere" / "b")
    shutil.move(moved / "test", moved / "train" / "later")  # another layout, the same films
    def read(folder):  # as scoring records them: each film's content hash beside its label
        files = assessment.labelled_files(folder)
        return files.assign(sha256=[hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in files["path"]])

    first, second = read(root), read(moved)
    assert len(first) == len(second) and assessment.fingerprint(first) == assessment.fingerprint(second)
    relabelled = second.assign(y=1 - second["y"])
    assert assessment.fingerprint(relabelled) != assessment.fingerprint(first)


def test_the_report_measures_the_scored_films_and_writes_what_a_reader_needs(tmp_path):
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(40, int), np.ones(60, int)]
    p = np.clip(rng.normal(0.3 + 0.4 * y, 0.2), 0, 1)
    types = ["" if v == 0 else ("virus" if i % 3 else "bacteria") for i, v in enumerate(y)]
    # Kermany names: two films per pneumonia patient; "scan-N.png" names no patient, so each is its own.
    paths = [f"/c/PNEUMONIA/person{i // 2}_{t}_{i}.jpeg" if t else f"/c/NORMAL/scan-{i}.png" for i, t in enumerate(types)]
    scored = pd.DataFrame({"path": paths, "y": y, "probability": p, "type": types})
    report = assessment.cohort_report(scored, threshold=0.45)
    assert report["ci95_resampled"] == "patients (70, holding 100 films)"
    assert report["metrics"]["auc"] == pytest.approx(roc_auc_score(y, p))
    assert report["metrics"]["sensitivity"] == pytest.approx(np.mean(p[y == 1] >= 0.45))
    assert report["at_0_5"]["specificity"] == pytest.approx(np.mean(p[y == 0] < 0.5))
    assert report["ci95"]["auc"]["low"] <= report["metrics"]["auc"] <= report["ci95"]["auc"]["high"]
    assert report["by_type"]["virus"]["count"] + report["by_type"]["bacteria"]["count"] == 60
    assert report["count"] == 100
    results = scored.assign(error=None)
    paths = assessment.write_outputs(report, results, scored, tmp_path / "out")
    assert all(path.is_file() and path.stat().st_size > 0 for path in paths)
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["metrics"]["threshold"] == 0.45
    with pytest.raises(DataError, match="only one class"):
        assessment.cohort_report(scored[scored["y"] == 1], 0.5)


def test_a_second_model_on_the_same_films_gives_the_paired_auc_difference(tmp_path):
    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(60, int), np.ones(90, int)]
    paths = [f"/c/PNEUMONIA/person{i // 3}_bacteria_{i}.jpeg" if v else f"/c/NORMAL/IM-{i:04d}-0001.jpeg"
             for i, v in enumerate(y)]
    sharp, blunt = np.clip(rng.normal(0.25 + 0.5 * y, 0.15), 0, 1), np.clip(rng.normal(0.4 + 0.15 * y, 0.2), 0, 1)
    results = pd.DataFrame({"path": paths, "y": y, "probability": sharp, "type": "", "error": None})
    results.loc[3, "error"] = "not a usable image"  # refused by this model: in neither side of the comparison
    scored = results[results["error"].isna()]
    theirs = pd.DataFrame({"probability": blunt, "error": None})
    theirs.loc[[5, 100], ["probability", "error"]] = [np.nan, "refused"]  # refused by the other model only
    kept = np.ones(len(y), bool)
    kept[[3, 5, 100]] = False
    report = assessment.against(scored, theirs, 0.4, "models:/x/1", own_threshold=0.5)
    assert report["films"] == 147 and report["refused_by_it_only"] == 2 and report["model"] == "models:/x/1"
    assert report["metrics"]["auc"] == pytest.approx(roc_auc_score(y[kept], blunt[kept]))
    assert report["metrics"]["specificity"] == pytest.approx(np.mean(blunt[kept & (y == 0)] < 0.4))
    d = report["auc_difference"]
    assert d["difference"] == pytest.approx(roc_auc_score(y[kept], sharp[kept]) - roc_auc_score(y[kept], blunt[kept]))
    assert 0 < d["low"] < d["difference"] < d["high"]  # a real gap: the interval leaves zero out
    # At each model's own threshold: this one calls at 0.5, the other at 0.4.
    rates, normal, sick = report["rate_differences"], kept & (y == 0), kept & (y == 1)
    assert rates["specificity"]["difference"] == pytest.approx(np.mean(sharp[normal] < 0.5) - np.mean(blunt[normal] < 0.4))
    assert rates["sensitivity"]["difference"] == pytest.approx(np.mean(sharp[sick] >= 0.5) - np.mean(blunt[sick] >= 0.4))
    assert rates["accuracy"]["difference"] == pytest.approx(
        np.mean((sharp[kept] >= 0.5) == y[kept]) - np.mean((blunt[kept] >= 0.4) == y[kept]))
    assert all(r["low"] <= r["difference"] <= r["high"] for r in rates.values())
    assert rates["specificity"]["low"] > 0  # the blunt model calls most NORMAL films pneumonia at 0.4
    # Written out: the other model's score beside each film's (none where it refused), and both curves.
    own = assessment.cohort_report(scored, 0.5)
    paths = assessment.write_outputs({**own, "against": report}, results, scored, tmp_path / "out", theirs=theirs)
    assert tmp_path / "out" / "roc_against.png" in paths
    per_film = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert per_film["against_probability"].isna().tolist() == [i in (5, 100) for i in range(len(y))]
    assert np.allclose(per_film["against_probability"].dropna(), np.delete(blunt, [5, 100]))
    same = assessment.against(scored, results[["probability", "error"]], 0.4, "itself", own_threshold=0.4)
    assert same["auc_difference"] == {"difference": 0.0, "low": 0.0, "high": 0.0}
    assert all(r == {"difference": 0.0, "low": 0.0, "high": 0.0} for r in same["rate_differences"].values())
    with pytest.raises(DataError, match="only one class"):
        assessment.against(scored[scored["y"] == 1], theirs, 0.4, "models:/x/1", own_threshold=0.5)


def test_a_films_patient_is_its_dicom_patient_id_else_the_one_its_name_gives(tmp_path):
    scored = pd.DataFrame({
        "path": ["/c/NORMAL/1.2.3", "/c/NORMAL/1.2.4", "/c/NORMAL/scan.png", "/c/PNEUMONIA/person7_virus_1.jpeg",
                 "/c/PNEUMONIA/person7_virus_2.jpeg", "/c/PNEUMONIA/1.2.5"],
        "patient": ["MRN-1", "MRN-1", "", "", "", "person7"],  # a DICOM ID never merges with a file name's
        "y": [0, 0, 0, 1, 1, 1], "probability": [0.1, 0.2, 0.3, 0.8, 0.7, 0.6], "type": ["", "", "", "virus", "virus", ""]})
    assert assessment.cohort_patients(scored) == ["dicom:MRN-1", "dicom:MRN-1", "name:scan", "name:person7",
                                                  "name:person7", "dicom:person7"]
    report = assessment.cohort_report(scored, threshold=0.5)
    assert report["ci95_resampled"] == "patients (4, holding 6 films)"
    assessment.write_outputs(report, scored.assign(error=None), scored, tmp_path)
    assert "patient" not in pd.read_csv(tmp_path / "predictions.csv").columns


def _cohort_paths(root: Path) -> list[str]:
    return [str(root / "NORMAL" / "ACC1.png"), str(root / "NORMAL" / "ACC2.png"),
            str(root / "PNEUMONIA" / "2024" / "ACC3.png"), str(root / "PNEUMONIA" / "2025" / "ACC3.png")]


def test_a_sites_film_list_names_each_films_patient_and_subgroups_by_path_or_unique_name(tmp_path):
    paths = _cohort_paths(tmp_path)
    listing = tmp_path / "films.csv"
    listing.write_text("File,Patient,Scanner\nACC1.png,P1,A\n./NORMAL/ACC2.png, P1 ,B\nPNEUMONIA\\2024\\ACC3.png,P2,A\n"
                       "PNEUMONIA/2025/ACC3.png,P3,\nNORMAL/gone.png,P9,A\nACC1.png,P1,A\n")  # a repeated row is one
    listed, unlisted = assessment.read_film_list(listing, tmp_path, paths)
    assert list(listed["patient"]) == ["P1", "P1", "P2", "P3"] and list(listed["scanner"]) == ["A", "B", "A", ""]
    assert unlisted == ["NORMAL/gone.png"]
    scored = pd.DataFrame({"path": paths, "listed_patient": listed["patient"], "subgroup.scanner": listed["scanner"],
                           "patient": ["MRN-9", "", "", ""], "y": [0, 0, 1, 1], "probability": [0.1, 0.6, 0.6, 0.9],
                           "type": ""})
    assert assessment.cohort_patients(scored) == ["list:P1", "list:P1", "list:P2", "list:P3"]  # the list decides
    report = assessment.cohort_report(scored, threshold=0.5)
    assert report["ci95_resampled"] == "patients (3, holding 4 films)"
    scanners = report["by_subgroup"]["scanner"]
    assert set(scanners) == {"A", "B"}  # the film with no scanner is in no subgroup
    assert (scanners["A"]["films"], scanners["A"]["patients"], scanners["A"]["pneumonia"]) == (2, 2, 1)
    assert scanners["A"]["sensitivity"] == 1.0 and scanners["A"]["specificity"] == 1.0 and scanners["A"]["auc"] == 1.0
    assert scanners["B"]["specificity"] == 0.0 and "sensitivity" not in scanners["B"]
    assessment.write_outputs(report, scored.assign(error=None), scored, tmp_path / "out")
    written = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert not {"patient", "listed_patient", "subgroup.scanner"} & set(written.columns)
    subgroups_only = tmp_path / "series.csv"
    subgroups_only.write_text("file,series\nACC1.png,x\nACC2.png,x\nPNEUMONIA/2024/ACC3.png,y\nPNEUMONIA/2025/ACC3.png,y\n")
    assert list(assessment.read_film_list(subgroups_only, tmp_path, paths)[0].columns) == ["series"]


@pytest.mark.parametrize("text, message", [
    ("file\nACC1.png\n", "needs a file column and at least one more"),
    ("file,patient,patient\nACC1.png,P1,P1\n", "needs a file column and at least one more, each named once"),
    ("file,patient\nACC1.png,\n", "line 2: a file and a patient are both needed"),
    ("file,series\nACC1.png,a\n,b\n", "line 3: a file is needed"),
    ("file,patient\nACC1.png,P1\nNORMAL/ACC1.png,P1\nACC1.png,P2\n", "lists ACC1.png twice, with different values"),
    ("file,patient\nACC1.png,P1\nACC2.png,P1\nACC3.png,P2\n", "the file name ACC3.png is shared by 2 films"),
    ("file,patient\nACC1.png,P1\nPNEUMONIA/2024/ACC3.png,P2\n", "2 of 4 films are not in .*, e.g. NORMAL/ACC2.png"),
    ("", "not a readable CSV"),
])
def test_a_film_list_that_cannot_describe_every_film_is_one_clear_sentence(tmp_path, text, message):
    listing = tmp_path / "films.csv"
    listing.write_text(text)
    with pytest.raises(DataError, match=message):
        assessment.read_film_list(listing, tmp_path, _cohort_paths(tmp_path))
    with pytest.raises(DataError, match="film list not found"):
        assessment.read_film_list(tmp_path / "none.csv", tmp_path, _cohort_paths(tmp_path))
    with pytest.raises(DataError, match="cannot be read"):
        assessment.read_film_list(tmp_path, tmp_path, _cohort_paths(tmp_path))  # a folder


def test_the_headers_scanner_is_a_subgroup_unless_the_sites_list_names_the_scanners(tmp_path):
    results = pd.DataFrame({"path": ["a", "b"], "probability": [0.1, 0.9], "scanner": ["Acme DR-1", ""]})
    from_headers = assessment.with_film_facts(results.copy(), None)
    assert list(from_headers["subgroup.scanner"]) == ["Acme DR-1", ""] and "scanner" not in from_headers
    listed = pd.DataFrame({"patient": ["P1", "P1"], "scanner": ["room 2", "room 3"]})
    from_list = assessment.with_film_facts(results.copy(), listed)
    assert list(from_list["subgroup.scanner"]) == ["room 2", "room 3"]
    assert list(from_list["listed_patient"]) == ["P1", "P1"]
    assert assessment.patients_source(from_list, tmp_path / "films.csv") == "the list films.csv"
    assert assessment.patients_source(from_headers, None).startswith("DICOM PatientID")
    no_scanner = assessment.with_film_facts(results.assign(scanner=""), None)
    assert not [c for c in no_scanner.columns if c.startswith("subgroup.")]


def test_subgroup_figures_become_mlflow_metric_names_mlflow_accepts():
    from mlflow.utils.validation import _validate_metric_name

    report = {"by_subgroup": {"scanner": {"Acme DR-1 (room 2)": {"films": 8, "specificity": 0.75,
                                                                  "specificity_ci95": {"low": 0.4, "high": 0.9}}}}}
    metrics = assessment.subgroup_metrics(report)
    assert metrics == {"cohort_by_scanner_Acme DR-1 _room 2__films": 8.0,
                       "cohort_by_scanner_Acme DR-1 _room 2__specificity": 0.75,
                       "cohort_by_scanner_Acme DR-1 _room 2__specificity_ci95_low": 0.4,
                       "cohort_by_scanner_Acme DR-1 _room 2__specificity_ci95_high": 0.9}
    for name in metrics:
        _validate_metric_name(name)
    with pytest.raises(Exception):  # what the replacement is for
        _validate_metric_name("cohort_by_scanner_Acme DR-1 (room 2)_films")
    assert assessment.subgroup_metrics({}) == {}
    long = assessment.subgroup_metrics({"by_subgroup": {"site": {"x" * 400: {"specificity_ci95": {"high": 0.9}}}}})
    assert [len(name) for name in long] == [200 + len("_specificity_ci95_high")]
