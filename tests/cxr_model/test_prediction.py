"""Prediction, the pyfunc and the CLI on a model trained and registered from synthetic images."""

import base64
import dataclasses
import io
import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFilter

from cxr_model import cli, film_stats, preprocess, serving, steps
from cxr_model.config import load_config
from cxr_model.data import read_manifest
from tests.conftest import make_dataset, synthetic_xray, write_params
from tests.dicom_files import dicom_bytes


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("predict")
    params = write_params(tmp / "project", make_dataset(tmp / "landing", size=64), preprocess={"image_size": 48})
    cfg = load_config(params)
    for name in ("ingest", "validate", "profile", "train", "evaluate", "register", "promote"):
        steps.STEPS[name](cfg)
    mlflow.set_tracking_uri(cfg.tracking_uri)
    mlflow.set_registry_uri(cfg.tracking_uri)
    return cfg, params


@pytest.fixture(scope="module")
def champion(project):
    cfg, _ = project
    return serving.load_predictor(serving.resolve_uri(None, cfg.mlflow.registered_model))


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_training_cache_and_prediction_paths_give_the_same_probability(project, champion):
    cfg, _ = project
    manifest = read_manifest(cfg.layout.manifest)
    train = manifest[manifest["split"] == "train"].reset_index(drop=True).head(6)
    cached = preprocess.decoded_pixels(train, cfg.data_source, cfg.preprocess.image_size,
                                       cfg.data.max_image_pixels, cfg.layout.cache_dir)
    from cxr_model import training

    via_training = training.predict(champion.model, cached[..., None])
    via_files = champion.predict_files([cfg.data_source / p for p in train["path"]], progress=False)
    np.testing.assert_allclose(via_files["probability"].astype(float), via_training, atol=1e-5)
    assert list(via_files["sha256"]) == list(train["sha256"])  # each score names the content it read
    assert champion.threshold == pytest.approx(json.loads(cfg.layout.metrics.read_text())["threshold"]["threshold"])


def test_a_batch_of_good_and_bad_files_scores_the_good_and_explains_the_bad(project, champion, tmp_path, capsys):
    cfg, _ = project
    xray = np.asarray(synthetic_xray(7, "PNEUMONIA", 64))
    folder = tmp_path / "inbox"
    folder.mkdir()
    synthetic_xray(7, "PNEUMONIA", 64).save(folder / "a_good.jpeg", quality=95)
    (folder / "b_sixteen_bit.png").write_bytes(_png((xray.astype(np.uint16) * 257)))
    (folder / "c_scan.dcm").write_bytes(dicom_bytes(255 - xray, "MONOCHROME1"))
    (folder / "d_notes.png").write_bytes(b"this is a text file, not an image")
    (folder / "e_truncated.jpeg").write_bytes((folder / "a_good.jpeg").read_bytes()[:200])
    (folder / "f_blank.png").write_bytes(_png(np.full((64, 64), 128, np.uint8)))
    (folder / "g_tiny.png").write_bytes(_png(xray[:16, :16]))
    rgb = np.stack([xray, np.roll(xray, 20, 0) // 3, 255 - xray], axis=-1).astype(np.uint8)
    (folder / "h_photo.png").write_bytes(_png(rgb))
    # PACS exports name DICOM files by UID or give them no suffix; other files are passed over, aloud
    (folder / "pacs").mkdir()
    (folder / "pacs" / "IM000001").write_bytes(dicom_bytes(xray, PatientID="MRN-0042"))
    (folder / "pacs" / "1.2.840.113619.2.1").write_bytes(dicom_bytes(xray, PatientID="MRN-0042"))
    (folder / "pacs" / "lateral.dcm").write_bytes(dicom_bytes(xray, ViewPosition="LL"))
    (folder / "pacs" / "DICOMDIR.txt").write_text("an index, not a film")
    (folder / "readme").write_text("no suffix, not DICOM")
    out = tmp_path / "out"
    code = cli.main(["--params", str(project[1]), "predict", str(folder), "--out", str(out)])
    assert code == 0
    captured = capsys.readouterr()
    assert "passed over 2 file(s)" in captured.err
    rows = pd.read_csv(out / "predictions.csv")
    rows.index = [p.split("/")[-1] for p in rows["path"]]
    good = rows.loc[["a_good.jpeg", "b_sixteen_bit.png", "c_scan.dcm", "IM000001", "1.2.840.113619.2.1"]]
    assert good["error"].isna().all() and good["probability"].between(0, 1).all()
    # the same film as JPEG and as inverted (MONOCHROME1) DICOM gets the same answer
    assert good["probability"]["c_scan.dcm"] == pytest.approx(good["probability"]["a_good.jpeg"], abs=1e-3)
    assert good["probability"]["IM000001"] == pytest.approx(good["probability"]["a_good.jpeg"], abs=1e-3)
    assert all((out / "gradcam" / p.split("/")[-1]).is_file() for p in good["heatmap"])
    reasons = rows["error"].fillna("")
    assert "not a usable image" in reasons["d_notes.png"]
    assert "not a usable image" in reasons["e_truncated.jpeg"]
    assert "blank" in reasons["f_blank.png"]
    assert "too small" in reasons["g_tiny.png"]
    assert "colour" in reasons["h_photo.png"]
    assert "view position LL" in reasons["lateral.dcm"]
    summary = json.loads((out / "predictions.json").read_text())
    assert summary["images"] == 11 and summary["scored"] == 5 and summary["refused"] == 6
    # Borderline: the score inside the threshold's validation interval, stored with the version.
    ci = json.loads(cfg.layout.metrics.read_text())["threshold"]["ci95"]
    assert champion.band == pytest.approx((ci["low"], ci["high"]))
    assert list(good["borderline"]) == [bool(ci["low"] <= p <= ci["high"]) for p in good["probability"]]
    assert rows["borderline"][rows["error"].notna()].isna().all()
    assert f"{int(good['borderline'].sum())} borderline: their scores lie within {ci['low']:.3f}-{ci['high']:.3f}" \
        in captured.out
    # Each scored film's statistics; five films are too few to set against the training films.
    assert good[["brightness", "contrast", "detail"]].notna().all().all()
    assert rows.loc[rows["error"].notna(), "detail"].isna().all()
    assert "5 film(s) are too few to compare with the model's training films" in captured.out
    # A patient's identifier is read for grouping only: no output carries it.
    assert "patient" not in rows.columns
    assert all("MRN-0042" not in path.read_text() for path in (out / "predictions.csv", out / "predictions.json"))


def test_assess_groups_dicom_films_by_the_headers_patient_and_writes_no_identifier(project, tmp_path, capsys):
    _, params = project
    cohort = tmp_path / "pacs-export"
    for label in ("NORMAL", "PNEUMONIA"):
        (cohort / label).mkdir(parents=True)
        for patient in range(4):
            for film in range(2):  # two films per patient, named by UID as PACS exports name them
                pixels = np.asarray(synthetic_xray(100 * patient + film + (50 if label == "NORMAL" else 0), label, 64))
                (cohort / label / f"1.2.826.0.1.{label[0]}{patient}.{film}").write_bytes(
                    dicom_bytes(pixels, PatientID=f"MRN-{label}-{patient}", Manufacturer="Acme",
                                ManufacturerModelName=f"DR-{patient % 2}"))
    out = tmp_path / "assessed"
    assert cli.main(["--params", str(params), "assess", str(cohort), "--out", str(out), "--no-track"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "metrics.json").read_text())
    assert report["count"] == 16 and report["ci95_resampled"] == "patients (8, holding 16 films)"
    assert "from redrawing patients (8, holding 16 films)" in printed
    # The headers' scanners break the figures down, as a site's list would.
    scanners = report["by_subgroup"]["scanner"]
    assert {value: (g["films"], g["patients"]) for value, g in scanners.items()} == {"Acme DR-0": (8, 4), "Acme DR-1": (8, 4)}
    assert "  scanner Acme DR-1: 8 films of 4 patients (4 PNEUMONIA)" in printed
    assert "patient" not in pd.read_csv(out / "predictions.csv").columns
    assert not any("MRN-" in path.read_text() for path in out.glob("*.*") if path.suffix in (".csv", ".json"))



def test_assess_takes_patients_and_subgroups_from_the_sites_film_list_and_writes_no_identifier(
        project, tmp_path, capsys):
    _, params = project
    cohort, rows = tmp_path / "accession-export", ["file,patient,scanner"]
    for label in ("NORMAL", "PNEUMONIA"):
        (cohort / label).mkdir(parents=True)
        for patient in range(4):
            for film in range(2):  # named by accession number: neither the name nor a header gives the patient
                name = f"ACC{label[0]}{patient}{film}.png"
                synthetic_xray(100 * patient + film + (50 if label == "NORMAL" else 0), label, 64).save(cohort / label / name)
                rows.append(f"{label}/{name},SITE-{label}-{patient},{'AB'[patient % 2]}")
    (tmp_path / "films.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "assessed"
    assert cli.main(["--params", str(params), "assess", str(cohort), "--out", str(out), "--no-track",
                     "--film-list", str(tmp_path / "films.csv")]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "metrics.json").read_text())
    assert report["ci95_resampled"] == "patients (8, holding 16 films)"
    assert "patients (8, holding 16 films); patients from the list films.csv" in printed
    scanners = report["by_subgroup"]["scanner"]
    assert {value: (g["films"], g["patients"], g["pneumonia"]) for value, g in scanners.items()} == \
        {"A": (8, 4, 4), "B": (8, 4, 4)}
    for value, g in scanners.items():
        assert f"  scanner {value}: 8 films of 4 patients (4 PNEUMONIA), sensitivity {g['sensitivity']:.3f}" in printed
    assert not any("SITE-" in path.read_text() for path in out.glob("*.*") if path.suffix in (".csv", ".json"))
    assert "scanner" not in pd.read_csv(out / "predictions.csv").columns
    assert (out / "subgroups.png").is_file()
    assert cli.main(["--params", str(params), "assess", str(cohort), "--out", str(out), "--no-track"]) == 0
    assert json.loads((out / "metrics.json").read_text())["ci95_resampled"] == "patients (16, holding 16 films)"
    (tmp_path / "films.csv").write_text("\n".join(rows[:-1]) + "\n")
    assert cli.main(["--params", str(params), "assess", str(cohort), "--no-track",
                     "--film-list", str(tmp_path / "films.csv")]) == 1
    assert "1 of 16 films are not in" in capsys.readouterr().err


def test_missing_champion_or_inputs_give_one_sentence(project, tmp_path, capsys):
    _, params = project
    for command in ("predict", "assess"):  # a threshold outside 0-1 would call every film alike
        with pytest.raises(SystemExit) as stop:
            cli.main(["--params", str(params), command, str(tmp_path), "--threshold", "1.5"])
        assert stop.value.code == 2 and "a threshold is a score between 0 and 1, got 1.5" in capsys.readouterr().err
    assert cli.main(["--params", str(params), "predict", str(tmp_path / "nothing")]) == 1
    assert "no image files found" in capsys.readouterr().err
    (tmp_path / "x.jpeg").write_bytes(b"")
    assert cli.main(["--params", str(params), "predict", str(tmp_path / "x.jpeg"), "--model", "999"]) == 1
    assert "cannot load model models:/cxr-pneumonia/999" in capsys.readouterr().err


def test_a_threshold_given_by_hand_has_no_borderline_band(project):
    cfg, _ = project
    uri = serving.resolve_uri(None, cfg.mlflow.registered_model)
    by_hand = serving.load_predictor(uri, threshold=0.5)
    assert by_hand.band is None and by_hand.threshold == 0.5
    film = (cfg.data_source / read_manifest(cfg.layout.manifest)["path"].iloc[0]).read_bytes()
    assert by_hand.predict_bytes([film])["borderline"].isna().all()


def test_pyfunc_takes_base64_images_and_answers_bad_ones_with_reasons(project, tmp_path):
    cfg, _ = project
    model = mlflow.pyfunc.load_model(f"models:/{cfg.mlflow.registered_model}@champion")
    good = (cfg.data_source / read_manifest(cfg.layout.manifest)["path"].iloc[0]).read_bytes()
    too_big = "A" * (cfg.predict.max_image_bytes * 4 // 3 + 8)
    frame = pd.DataFrame({"image": [base64.b64encode(good).decode(), "%%% not base64 %%%",
                                    base64.b64encode(b"GIF89a nonsense").decode(), too_big]})
    out = model.predict(frame)
    assert list(out.columns) == ["probability", "label", "threshold", "borderline", "error"]
    assert out["borderline"][0] in (True, False) and out["borderline"][1:].isna().all()
    assert 0 <= out["probability"][0] <= 1 and out["label"][0] in ("NORMAL", "PNEUMONIA") and pd.isna(out["error"][0])
    assert "not valid base64" in out["error"][1]
    assert "not a usable image" in out["error"][2]
    assert "exceeds" in out["error"][3]
    assert out["probability"][1:].isna().all()
    # Logged from code, not pickled: the version carries its loading code and no python_model.pkl.
    flavor = model.metadata.flavors["python_function"]
    assert flavor["loader_module"] == "mlflow.pyfunc.loaders.code_model" and "python_model" not in flavor
    local = mlflow.artifacts.download_artifacts(f"models:/{cfg.mlflow.registered_model}@champion",
                                                dst_path=str(tmp_path))
    files = {path.name for path in Path(local).iterdir()}
    assert "pyfunc_entry.py" in files and "python_model.pkl" not in files


def test_model_card_travels_with_the_version(project, capsys):
    cfg, params = project
    assert cli.main(["--params", str(params), "card", "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    metrics = json.loads(cfg.layout.metrics.read_text())
    assert card["threshold"]["value"] == pytest.approx(metrics["threshold"]["threshold"])
    assert card["threshold"]["ci95"] == metrics["threshold"]["ci95"]
    assert card["threshold"]["test_accuracy_at_ci95"]["low"] == metrics["test_at_threshold_ci95"]["low"]["accuracy"]
    assert card["training_data"]["counts"] == json.loads(cfg.layout.ingest_summary.read_text())["counts"]
    for name in ("auc", "accuracy", "sensitivity", "specificity"):
        ci = card["test_ci95"][name]
        assert ci["low"] <= card["test_metrics"][name] <= ci["high"]
    assert "pediatric" in card["intended_use"] and any("lateral" in x for x in card["limitations"])
    assert card["software"]["tensorflow-cpu"] and card["software"]["pydicom"]
    assert card["shortcut_probes"]["contrast_60"] == pytest.approx(
        metrics["val_probes"]["contrast_60"]["normal_ratio"], abs=0.005)
    md = cfg.layout.model_card.read_text()
    assert "Shortcut probes (validation films)" in md and "corners blacked out ×" in md
    assert card["validation_auc_aspect_jittered"] == metrics["val_aspect_jitter_auc"]
    assert f"(the squash of the sources scrambled): {metrics['val_aspect_jitter_auc']:.4f}" in md
    assert card["calibration"]["test"]["brier"] == pytest.approx(metrics["calibration"]["test"]["brier"])
    # The training films' statistics, from the profile's table of the training split.
    films = pd.read_csv(cfg.layout.film_stats).query("split == 'train'")
    assert card["training_films"]["films"]["all"] == len(films)
    normal = films.loc[films["label"] == "NORMAL", "detail"]
    assert card["training_films"]["percentiles"]["detail"]["NORMAL"][50] == pytest.approx(normal.median(), rel=1e-3)
    assert f"| detail | {normal.median():.3f} (" in md
    assert f"Brier score {metrics['calibration']['test']['brier']:.3f}" in md
    assert card["sensitivity_by_type"] == metrics["by_type"]["test"] and "| virus |" in md
    ci = metrics["threshold"]["ci95"]
    assert (f"{ci['low']:.3f}–{ci['high']:.3f} (95 %)" in md) == (ci["low"] < ci["high"])
    assert f"The intervals resample {metrics['test_ci95_resampled']}" in md
    assert metrics["test_ci95_resampled"].startswith("patients (")
    assert "bootstrap 95 % CI" in md and f"version {json.loads(cfg.layout.registration.read_text())['version']}" in md


def test_predict_says_when_a_batchs_films_are_unlike_the_training_films(project, tmp_path, capsys):
    cfg, params = project
    batch = tmp_path / "soft-batch"
    shutil.copytree(cfg.data_source / "test", batch)
    for film in batch.rglob("*.jpeg"):  # a site's softer films, unlabelled
        Image.open(film).filter(ImageFilter.GaussianBlur(2)).save(film)
    out = tmp_path / "out"
    assert cli.main(["--params", str(params), "predict", str(batch), "--out", str(out), "--no-gradcam",
                     "--track"]) == 0
    printed = capsys.readouterr().out
    rows = pd.read_csv(out / "predictions.csv")
    shift = pd.read_csv(out / "film_shift.csv").set_index("statistic")
    # Tracked: the batch's aggregates in an MLflow run of its own, nothing per film.
    client = mlflow.MlflowClient(cfg.tracking_uri, cfg.tracking_uri)
    run = client.search_runs([client.get_experiment_by_name(cfg.mlflow.experiment).experiment_id],
                             "tags.`cxr.kind` = 'batch'")[0]
    assert f"MLflow run {run.info.run_id} (kind batch)" in printed
    assert run.data.metrics["batch_films"] == len(rows) and run.data.metrics["batch_refused"] == 0
    assert run.data.metrics["batch_called_pneumonia"] == pytest.approx((rows["label"] == "PNEUMONIA").mean())
    assert run.data.metrics["batch_shift_detail_ks"] == pytest.approx(shift.loc["detail", "ks"])
    assert run.data.tags["cxr.batch_path"] == str(batch.resolve()) and run.data.tags["cxr.model_version"]
    logged = {f.path for f in client.list_artifacts(run.info.run_id, "batch")}
    assert logged == {"batch/film_shift.csv", "batch/film_shift.png"}
    # No labels: the whole batch, against the training classes mixed in the share it was called PNEUMONIA.
    assert set(shift["group"]) == {"all"} and (shift["films"] == len(rows)).all()
    assert shift["training_pneumonia_share"].to_numpy() == pytest.approx((rows["label"] == "PNEUMONIA").mean())
    assert shift.loc["detail", "shifted"] and shift.loc["detail", "cohort_median"] < shift.loc["detail", "training_q1"]
    assert "films unlike the training films (read these scores with this in mind):" in printed
    assert "    detail of all films: cohort " in printed
    assert json.loads((out / "predictions.json").read_text())["film_shift"][0]["group"] == "all"
    assert (out / "film_shift.png").read_bytes()[:4] == b"\x89PNG"
    # A later batch in the same folder with nothing to compare leaves no earlier comparison behind.
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.png").write_bytes(b"not an image")
    assert cli.main(["--params", str(params), "predict", str(junk), "--out", str(out), "--no-gradcam"]) == 0
    assert not (out / "film_shift.csv").exists() and not (out / "film_shift.png").exists()
    assert "film_shift" not in json.loads((out / "predictions.json").read_text())


def test_assessing_the_test_split_reproduces_the_evaluate_step_and_is_tracked(project, tmp_path, capsys):
    cfg, params = project
    broken = tmp_path / "cohort" / "NORMAL" / "broken.png"
    shutil.copytree(cfg.data_source / "test", tmp_path / "cohort")
    broken.write_bytes(b"not an image")
    out = tmp_path / "assessed"
    assert cli.main(["--params", str(params), "assess", str(tmp_path / "cohort"), "--name", "site-b",
                     "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "metrics.json").read_text())
    metrics = json.loads(cfg.layout.metrics.read_text())
    # Same films, same model, same stored threshold: the figures of the evaluate step.
    for name in ("auc", "accuracy", "sensitivity", "specificity"):
        assert report["metrics"][name] == pytest.approx(metrics["test"][name], abs=1e-6)
    assert report["count"] == metrics["counts"]["test"]
    ci, p_test = metrics["threshold"]["ci95"], pd.read_csv(cfg.layout.predictions)["probability"]
    assert report["borderline"]["count"] == int(p_test.between(ci["low"], ci["high"]).sum())
    assert "borderline (scores within the threshold's validation interval)" in printed
    # The same patients redrawn (from the file names), so the same intervals.
    assert report["ci95_resampled"] == metrics["test_ci95_resampled"] and "from redrawing patients (" in printed
    for name in ("auc", "accuracy", "sensitivity", "specificity"):
        assert report["ci95"][name] == pytest.approx(metrics["test_ci95"][name], abs=1e-9)
    # ... and the same figures at both ends of the stored threshold's validation interval.
    for end in ("low", "high"):
        assert report["at_threshold_ci95"][end]["accuracy"] == pytest.approx(
            metrics["test_at_threshold_ci95"][end]["accuracy"], abs=1e-6)
        assert f"at the {end} end of the threshold's validation interval" in printed
    rows = pd.read_csv(out / "predictions.csv").set_index("path")
    assert "not a usable image" in rows.loc[str(broken), "error"]
    assert "1 refused" in printed and "the model on its own test split" in printed
    client = mlflow.MlflowClient(cfg.tracking_uri, cfg.tracking_uri)
    champion = client.get_model_version_by_alias(cfg.mlflow.registered_model, "champion")
    assert champion.tags["assessment.site-b"].startswith(f"AUC {report['metrics']['auc']:.3f}")
    run = client.search_runs([client.get_experiment_by_name(cfg.mlflow.experiment).experiment_id],
                             "tags.`cxr.kind` = 'assessment'")[0]
    assert run.data.tags["cxr.model_version"] == str(champion.version)
    assert run.data.metrics["cohort_auc"] == pytest.approx(report["metrics"]["auc"])
    assert run.data.metrics["cohort_refused"] == 1
    # The films against the training films: each statistic that differs is printed, with its figures.
    shift = pd.read_csv(out / "film_shift.csv")
    assert set(shift["group"]) == {"all", "NORMAL", "PNEUMONIA"} and len(shift) == 9
    for _, row in shift[shift["group"] != "all"].iterrows():
        assert (f"    {film_stats.describe(row)}" in printed) == bool(row["shifted"])
    assert f"(every statistic: {out / 'film_shift.csv'}" in printed
    assert run.data.metrics["cohort_shift_NORMAL_detail_ks"] == pytest.approx(
        shift.query("group == 'NORMAL' and statistic == 'detail'")["ks"].iloc[0])
    # The card, read later, says what has been measured of the version since it was written.
    assert cli.main(["--params", str(params), "card"]) == 0
    shown = capsys.readouterr().out
    assert "## Measured since registration" in shown
    assert f"- on cohort site-b: {champion.tags['assessment.site-b']}" in shown and "- promotion: promoted" in shown
    assert cli.main(["--params", str(params), "card", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["measured_since_registration"]["assessment.site-b"] == \
        champion.tags["assessment.site-b"]


def test_assess_says_when_the_cohorts_films_are_unlike_the_training_films(project, tmp_path, capsys):
    cfg, params = project
    cohort = tmp_path / "smooth-site"
    shutil.copytree(cfg.data_source / "test", cohort)
    for film in (cohort / "NORMAL").iterdir():  # another site's softer NORMAL films
        Image.open(film).filter(ImageFilter.GaussianBlur(2)).save(film)
    out = tmp_path / "assessed"
    assert cli.main(["--params", str(params), "assess", str(cohort), "--out", str(out), "--no-track"]) == 0
    printed = capsys.readouterr().out
    shift = pd.read_csv(out / "film_shift.csv").set_index(["statistic", "group"])
    assert shift.loc[("detail", "NORMAL"), "shifted"] and not shift.loc[("detail", "PNEUMONIA"), "shifted"]
    assert shift.loc[("detail", "NORMAL"), "cohort_median"] < shift.loc[("detail", "NORMAL"), "training_q1"]
    assert "films unlike the training films" in printed and "    detail of NORMAL films: cohort " in printed
    assert json.loads((out / "metrics.json").read_text())["film_shift"]
    assert (out / "film_shift.png").read_bytes()[:4] == b"\x89PNG"
    per_film = pd.read_csv(out / "predictions.csv")
    smooth = per_film["path"].str.contains("/NORMAL/")
    assert per_film.loc[smooth, "detail"].max() < per_film.loc[~smooth, "detail"].median() * 2
    assert per_film[["brightness", "contrast", "detail"]].notna().all().all()


def test_inputs_kept_for_a_model_that_reads_films_alike_score_as_its_own_decoding_would(project, champion,
                                                                                        tmp_path):
    cfg, _ = project
    from cxr_model.model import build_model
    from cxr_model.prediction import Predictor

    films = sorted((cfg.data_source / "test" / "NORMAL").iterdir())[:5]
    (tmp_path / "notes.jpeg").write_text("not an image")
    paths = [*films[:2], tmp_path / "notes.jpeg", *films[2:]]
    other = Predictor(build_model(cfg.preprocess.image_size, cfg.model, seed=7), 0.5, champion.image_size,
                      champion.max_pixels, champion.settings)
    assert other.reads_like(champion) and champion.reads_like(other)
    assert not dataclasses.replace(other, image_size=other.image_size + 16).reads_like(champion)
    assert not dataclasses.replace(other, max_pixels=other.max_pixels // 2).reads_like(champion)
    assert not dataclasses.replace(other, settings=dataclasses.replace(other.settings, min_side=1)).reads_like(champion)

    kept: list = []
    mine = champion.predict_files(paths, gradcam=False, progress=False, keep_inputs=kept)
    assert len(kept) == len(paths) and all(k.gray is None for k in kept)  # model inputs only
    theirs = other.score(kept)
    decoded = other.predict_files(paths, gradcam=False, progress=False)
    np.testing.assert_array_equal(theirs["error"].isna(), decoded["error"].isna())
    assert theirs.loc[2, "error"] == decoded.loc[2, "error"] == mine.loc[2, "error"]  # the unreadable file
    ok = decoded["error"].isna()
    np.testing.assert_allclose(theirs.loc[ok, "probability"].astype(float), decoded.loc[ok, "probability"].astype(float))


def test_assess_against_a_second_model_scores_the_same_films_and_tracks_the_difference(project, tmp_path, capsys,
                                                                                       monkeypatch):
    cfg, params = project
    from cxr_model import images
    from cxr_model.model import build_model

    untrained = tmp_path / "untrained.keras"  # a bare model file of the same input, never trained
    build_model(cfg.preprocess.image_size, cfg.model, seed=7).save(untrained)
    out = tmp_path / "assessed"
    decoded: list = []
    decode = images.decode
    monkeypatch.setattr(images, "decode", lambda *a, **k: decoded.append(1) or decode(*a, **k))
    assert cli.main(["--params", str(params), "assess", str(cfg.data_source / "test"), "--name", "site-c",
                     "--out", str(out), "--against", str(untrained)]) == 0
    films = [f for f in (cfg.data_source / "test").rglob("*") if f.is_file()]
    assert len(decoded) == len(films)  # each film decoded once for both models, which read films alike
    monkeypatch.undo()
    printed = capsys.readouterr().out
    report = json.loads((out / "metrics.json").read_text())
    against = report["against"]
    assert against["model"] == str(untrained) and against["films"] == report["count"]
    assert against["metrics"]["threshold"] == 0.5  # a bare file carries no stored threshold
    d = against["auc_difference"]
    assert d["difference"] == pytest.approx(report["metrics"]["auc"] - against["metrics"]["auc"])
    assert d["low"] <= d["difference"] <= d["high"]
    assert not against["threshold_stored"]
    # Both models' scores side by side per film, and both ROC curves in one plot.
    per_film = pd.read_csv(out / "predictions.csv")
    scored = per_film["probability"].notna()
    assert per_film.loc[scored, "against_probability"].notna().all()
    assert not np.allclose(per_film.loc[scored, "against_probability"], per_film.loc[scored, "probability"])
    assert (out / "roc_against.png").read_bytes()[:4] == b"\x89PNG"
    assert (f"  against {untrained}, on the same {against['films']} films, at 0.500 (a bare model file stores "
            "no threshold: give one with --against-threshold): auc ") in printed
    assert f"  AUC, this model minus that one: {d['difference']:+.4f} ({d['low']:+.4f} to {d['high']:+.4f}" in printed
    spec = against["rate_differences"]["specificity"]
    assert spec["difference"] == pytest.approx(report["metrics"]["specificity"] - against["metrics"]["specificity"])
    assert (f"  at each model's threshold, this model minus that one: accuracy "
            f"{against['rate_differences']['accuracy']['difference']:+.3f} (") in printed
    client = mlflow.MlflowClient(cfg.tracking_uri, cfg.tracking_uri)
    run = client.search_runs([client.get_experiment_by_name(cfg.mlflow.experiment).experiment_id],
                             "tags.`cxr.cohort` = 'site-c'")[0]
    assert run.data.tags["cxr.against"] == str(untrained)
    assert run.data.metrics["cohort_auc_minus_against_difference"] == pytest.approx(d["difference"])
    assert run.data.metrics["cohort_against_auc"] == pytest.approx(against["metrics"]["auc"])
    assert run.data.metrics["cohort_minus_against_specificity_difference"] == pytest.approx(spec["difference"])
    # Against a registered version (here the champion itself): its stored threshold, and no difference.
    version = client.get_model_version_by_alias(cfg.mlflow.registered_model, "champion").version
    assert cli.main(["--params", str(params), "assess", str(cfg.data_source / "test"), "--no-track",
                     "--out", str(tmp_path / "itself"), "--against", f"models:/{cfg.mlflow.registered_model}/{version}"]) == 0
    printed = capsys.readouterr().out
    itself = json.loads((tmp_path / "itself" / "metrics.json").read_text())["against"]
    assert itself["threshold_stored"] and itself["auc_difference"]["difference"] == 0
    per_film = pd.read_csv(tmp_path / "itself" / "predictions.csv").dropna(subset=["probability"])
    assert np.allclose(per_film["against_probability"], per_film["probability"])
    assert f"at its threshold {report['metrics']['threshold']:.3f}: auc " in printed
    assert "the two cannot be told apart on these films" in printed
    # The bare file's threshold given by hand; without --against it is a mistake said in one sentence.
    assert cli.main(["--params", str(params), "assess", str(cfg.data_source / "test"), "--no-track", "--out",
                     str(tmp_path / "given"), "--against", str(untrained), "--against-threshold", "0.3"]) == 0
    given = json.loads((tmp_path / "given" / "metrics.json").read_text())["against"]
    assert given["metrics"]["threshold"] == 0.3 and given["threshold_given"] and not given["threshold_stored"]
    assert "at the threshold given, 0.300: auc " in capsys.readouterr().out
    assert cli.main(["--params", str(params), "assess", str(cfg.data_source / "test"), "--no-track",
                     "--against-threshold", "0.3"]) == 1
    assert "--against-threshold needs --against MODEL" in capsys.readouterr().err
    # A model that cannot be loaded stops the command in one sentence, before anything is written.
    assert cli.main(["--params", str(params), "assess", str(cfg.data_source / "test"), "--no-track",
                     "--out", str(tmp_path / "none"), "--against", str(tmp_path / "missing.keras")]) == 1
    assert "cannot load model" in capsys.readouterr().err and not (tmp_path / "none").exists()
