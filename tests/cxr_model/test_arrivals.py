import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from cxr_model import arrivals


def _manifest(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame([{"path": f"{split}/{label}/{sha}.png", "label": label, "patient_id": patient, "sha256": sha,
                          "split": split, "error": error} for sha, patient, label, error, *rest in rows
                         for split in [rest[0] if rest else "train"]])


def test_new_films_are_new_contents_of_new_patients_only():
    seen = _manifest([("a", "p1", "NORMAL", ""), ("b", "p2", "PNEUMONIA", "")])
    current = _manifest([
        ("a", "p1", "NORMAL", ""),            # trained on
        ("c", "p2", "PNEUMONIA", ""),         # a new film of a patient the champion trained on
        ("d", "p3", "NORMAL", ""), ("e", "p3", "NORMAL", ""), ("f", "p4", "PNEUMONIA", ""),
        ("g", "p5", "NORMAL", "cannot identify image file"),  # unreadable: not scored
        ("h", "p1", "NORMAL", "", "test"),    # the test folder numbers its patients apart
        ("i", "p3", "NORMAL", "", "val"),     # validation is carved from the training patients
    ])
    films, left_out = arrivals.new_films(current, seen)
    assert list(films["sha256"]) == ["d", "e", "f", "h", "i"] and left_out == 1
    # p1 of the test folder is not p1 of training; validation patients are training patients
    assert list(arrivals.patient_keys(films)) == ["train:p3", "train:p3", "train:p4", "test:p1", "train:p3"]
    seen_test = _manifest([("h", "p1", "NORMAL", "", "test")])
    assert arrivals.new_films(_manifest([("j", "p1", "NORMAL", "", "test"), ("k", "p1", "NORMAL", "")]),
                              seen_test)[1] == 1
    assert arrivals.new_films(seen, seen)[0].empty


def test_the_champions_figures_on_arrivals_redraw_patients_and_say_what_one_class_allows():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(30, int), np.ones(50, int)]
    p = np.clip(rng.normal(0.3 + 0.4 * y, 0.2), 0, 1)
    patients = np.arange(80) // 2
    figures = arrivals.champion_figures(y, p, 0.5, patients)
    assert (figures["films"], figures["patients"], figures["pneumonia"]) == (80, 40, 50)
    assert figures["metrics"]["auc"] == pytest.approx(roc_auc_score(y, p))
    assert figures["metrics"]["specificity"] == pytest.approx(np.mean(p[y == 0] < 0.5))
    assert figures["ci95"]["auc"]["low"] < figures["metrics"]["auc"] < figures["ci95"]["auc"]["high"]
    line = arrivals.summary(figures, "3")
    assert line.startswith("champion version 3 on the 80 films of 40 new patients (50 PNEUMONIA)")
    assert f"auc {figures['metrics']['auc']:.3f} (" in line and "at its threshold 0.500" in line

    normal_only = arrivals.champion_figures(np.zeros(3, int), np.array([0.1, 0.7, 0.2]), 0.5, np.array([1, 2, 2]))
    assert normal_only["metrics"] == {"threshold": 0.5, "specificity": pytest.approx(2 / 3),
                                      "accuracy": pytest.approx(2 / 3)}
    assert "the 3 films of 2 new patients (0 PNEUMONIA) since it was trained: specificity 0.667 at" \
        in arrivals.summary(normal_only, "3")
    none = arrivals.champion_figures(np.zeros(0, int), np.zeros(0), 0.5, np.zeros(0))
    assert none == {"films": 0, "patients": 0, "pneumonia": 0}
    assert arrivals.summary(none, "3") == "champion version 3: no films of new patients since it was trained"


def test_arrived_films_unlike_the_champions_training_films_are_named_in_its_line():
    from cxr_model import film_stats

    rng = np.random.default_rng(1)
    training = np.clip(rng.normal(120, 40, (400, 32, 32)), 0, 255).astype(np.uint8)
    y_train = np.repeat([0, 1], 200)
    ref = film_stats.reference(film_stats.film_statistics(training), y_train)
    y = np.repeat([0, 1], 200)
    darker_normals = np.clip(rng.normal(120, 40, (400, 32, 32)) - 60 * (y == 0)[:, None, None], 0, 255).astype(np.uint8)
    shift = arrivals.film_shift(ref, darker_normals, y)
    assert "brightness of NORMAL films" in " ".join(shift["differs"])
    assert not any("PNEUMONIA" in d for d in shift["differs"])
    assert shift["ks"]["NORMAL"]["brightness"] == pytest.approx(1.0) and set(shift["ks"]) == {"all", "NORMAL", "PNEUMONIA"}
    figures = {**arrivals.champion_figures(y, np.full(400, 0.4), 0.5, np.arange(400)), "film_shift": shift}
    assert shift["differs"][0] == f"brightness of NORMAL films (KS {shift['ks']['NORMAL']['brightness']:.2f})"
    assert arrivals.summary(figures, "3").endswith(
        "; the films differ from its training films in " + ", ".join(shift["differs"]))
    # A champion registered before the reference existed, or nothing arrived: nothing to say.
    assert arrivals.film_shift(None, darker_normals, y) is None
    assert arrivals.film_shift(ref, darker_normals[:0], y[:0]) is None
