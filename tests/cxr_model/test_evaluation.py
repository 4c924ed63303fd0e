import numpy as np
import pytest
from sklearn import metrics as skm
from scipy.stats import binomtest
from sklearn.calibration import calibration_curve

from cxr_model.config import EvaluateConfig
from cxr_model.evaluation import (bootstrap_ci, by_group, by_subgroup, calibration, clustered_interval, choose_threshold, cohort_metrics,
                                  evaluate_predictions, paired_auc_difference, ranking_metrics, resample_weights, threshold_interval,
                                  threshold_metrics, weighted_auc, wilson_interval)


@pytest.fixture
def scores():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    p = np.clip(0.35 * y + rng.normal(0.35, 0.2, 400), 0, 1)
    return y, p


def test_threshold_metrics_agree_with_scikit_learn(scores):
    y, p = scores
    m = threshold_metrics(y, p, 0.52)
    pred = (p >= 0.52).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred).ravel()
    assert (m["tn"], m["fp"], m["fn"], m["tp"]) == (tn, fp, fn, tp)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["sensitivity"] == pytest.approx(skm.recall_score(y, pred))
    assert m["specificity"] == pytest.approx(skm.recall_score(y, pred, pos_label=0))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
    r = ranking_metrics(y, p)
    assert r["auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert r["average_precision"] == pytest.approx(skm.average_precision_score(y, p))


def test_youden_midrange_sits_in_the_middle_of_a_separable_gap():
    # Separable validation: negatives up to 0.04, positives from 0.96. Plain max-Youden would
    # pick the edge of the plateau; the midrange rule lands in the middle.
    y = np.array([0] * 50 + [1] * 150)
    p = np.concatenate([np.linspace(0.0, 0.04, 50), np.linspace(0.96, 1.0, 150)])
    choice = choose_threshold(y, p, EvaluateConfig(youden_tolerance=0.0))
    assert choice["best_youden"] == pytest.approx(1.0)
    assert choice["threshold"] == pytest.approx(0.5)
    assert choice["range_low"] == pytest.approx(0.04) and choice["range_high"] == pytest.approx(0.96)


def test_youden_tolerance_widens_the_range_around_a_lone_outlier():
    # One positive at 0.05 makes the strict optimum sit at 0.05; tolerating one miss recentres it.
    y = np.array([0] * 100 + [1] * 100)
    p = np.concatenate([np.linspace(0.0, 0.03, 100), [0.05], np.linspace(0.9, 1.0, 99)])
    strict = choose_threshold(y, p, EvaluateConfig(youden_tolerance=0.0))
    assert strict["threshold"] < 0.1
    tolerant = choose_threshold(y, p, EvaluateConfig(youden_tolerance=0.02))
    assert 0.4 < tolerant["threshold"] < 0.5


def test_target_sensitivity_is_met_at_the_highest_possible_threshold(scores):
    y, p = scores
    choice = choose_threshold(y, p, EvaluateConfig(threshold_method="target_sensitivity", target_sensitivity=0.9))
    t = choice["threshold"]
    assert threshold_metrics(y, p, t)["sensitivity"] >= 0.9
    higher = np.min(p[p > t])
    assert threshold_metrics(y, p, higher)["sensitivity"] < 0.9


def test_fixed_threshold_and_single_class_fallback(scores):
    y, p = scores
    assert choose_threshold(y, p, EvaluateConfig(threshold_method="fixed", fixed_threshold=0.3))["threshold"] == 0.3
    fallback = choose_threshold(np.ones(10, int), p[:10], EvaluateConfig())
    assert fallback["method"] == "fixed" and "one class" in fallback["note"]


def test_report_uses_the_validation_threshold_on_test_and_reports_0_5_beside_it(scores):
    y, p = scores
    report = evaluate_predictions(y[:200], p[:200], y[200:], p[200:], EvaluateConfig())
    t = report["threshold"]["threshold"]
    assert report["test"]["threshold"] == t
    assert report["test_at_0_5"]["threshold"] == 0.5
    assert report["test"]["tp"] + report["test"]["fp"] + report["test"]["tn"] + report["test"]["fn"] == 200
    assert report["counts"] == {"val": 200, "test": 200}


def test_calibration_agrees_with_scikit_learn(scores):
    y, p = scores
    cal = calibration(y, p, bins=10)
    observed, predicted = calibration_curve(y, p, n_bins=10, strategy="uniform")
    assert cal["brier"] == pytest.approx(skm.brier_score_loss(y, p))
    assert [b["observed"] for b in cal["bins"]] == pytest.approx(list(observed))
    assert [b["mean_predicted"] for b in cal["bins"]] == pytest.approx(list(predicted))
    assert sum(b["count"] for b in cal["bins"]) == len(y)
    weights = np.array([b["count"] for b in cal["bins"]]) / len(y)
    assert cal["ece"] == pytest.approx(float(np.sum(weights * np.abs(observed - predicted))))


def test_calibration_tells_a_calibrated_score_from_an_overconfident_one():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 20000)
    y = (rng.uniform(0, 1, p.size) < p).astype(int)  # the score is the true probability
    overconfident = np.where(p >= 0.5, 0.99, 0.01)
    assert calibration(y, p)["ece"] < 0.02
    assert calibration(y, overconfident)["ece"] > 0.2
    assert calibration(y, overconfident)["brier"] > calibration(y, p)["brier"]
    assert calibration(np.array([]), np.array([]))["bins"] == []


@pytest.mark.parametrize("k,n", [(0, 12), (9, 12), (12, 12), (140, 148), (241, 242)])
def test_wilson_interval_agrees_with_scipy(k, n):
    expected = binomtest(k, n).proportion_ci(0.95, method="wilson")
    got = wilson_interval(k, n)
    assert (got["low"], got["high"]) == pytest.approx((expected.low, expected.high), abs=1e-9)


def test_sensitivity_and_auc_per_group_of_positives(scores):
    y, p = scores
    groups = np.where(y == 1, np.where(np.arange(len(y)) % 3 == 0, "virus", "bacteria"), "")
    groups[np.flatnonzero(y == 1)[:5]] = ""  # positives whose type is unknown are left out
    out = by_group(y, p, groups, 0.5)
    assert set(out) == {"bacteria", "virus"}
    for name, g in out.items():
        pos = (y == 1) & (groups == name)
        assert g["count"] == pos.sum()
        assert g["sensitivity"] == pytest.approx(skm.recall_score(y[pos], p[pos] >= 0.5))
        keep = pos | (y == 0)
        assert g["auc"] == pytest.approx(skm.roc_auc_score(y[keep], p[keep]))
        assert g["sensitivity_ci95"]["low"] < g["sensitivity"] < g["sensitivity_ci95"]["high"]


def test_the_threshold_interval_is_wide_on_a_separable_split_and_narrow_on_a_sharp_one():
    rng = np.random.default_rng(5)
    y = np.array([0] * 200 + [1] * 400)
    # Nearly separable (the validation split here): a few stragglers decide the plateau's edges.
    gap = np.concatenate([rng.uniform(0.0, 0.1, 196), rng.uniform(0.2, 0.9, 4),
                          rng.uniform(0.95, 1.0, 394), rng.uniform(0.1, 0.8, 6)])
    # Overlapping classes with a sharp optimum near 0.5.
    sharp = np.clip(np.where(y == 1, rng.normal(0.6, 0.08, 600), rng.normal(0.4, 0.08, 600)), 0, 1)
    cfg = EvaluateConfig()
    wide, narrow = threshold_interval(y, gap, cfg), threshold_interval(y, sharp, cfg)
    for p, ci in ((gap, wide), (sharp, narrow)):
        assert ci["low"] <= choose_threshold(y, p, cfg)["threshold"] <= ci["high"]
    assert wide["high"] - wide["low"] > 3 * (narrow["high"] - narrow["low"])
    assert threshold_interval(y, gap, cfg) == wide  # seeded: the same report twice
    fixed = EvaluateConfig(threshold_method="fixed", fixed_threshold=0.3)
    assert threshold_interval(y, gap, fixed) == {"low": 0.3, "high": 0.3}
    # Two films: the one seeded resample draws the same film twice; with no resample holding
    # both classes the interval is the pick itself (np.percentile of nothing would raise).
    tiny = threshold_interval(np.array([0, 1]), np.array([0.2, 0.8]), cfg, n_boot=1)
    point = choose_threshold(np.array([0, 1]), np.array([0.2, 0.8]), cfg)["threshold"]
    assert tiny["low"] <= point <= tiny["high"]


def test_the_report_gives_test_accuracy_at_both_ends_of_the_threshold_interval(scores):
    y, p = scores
    report = evaluate_predictions(y[:200], p[:200], y[200:], p[200:], EvaluateConfig())
    ci, ends = report["threshold"]["ci95"], report["test_at_threshold_ci95"]
    assert ci["low"] < report["threshold"]["threshold"] < ci["high"]
    for end in ("low", "high"):
        assert ends[end]["threshold"] == ci[end]
        assert ends[end]["accuracy"] == pytest.approx(np.mean((p[200:] >= ci[end]) == y[200:]))


def test_patient_resampling_draws_whole_patients():
    patients = np.array(["a", "a", "a", "b", "c", "c"])
    w = resample_weights(6, n_boot=500, seed=1, clusters=patients)
    assert w.shape == (500, 6)
    assert (w[:, 0] == w[:, 1]).all() and (w[:, 1] == w[:, 2]).all() and (w[:, 4] == w[:, 5]).all()
    assert (w[:, [0, 3, 4]].sum(1) == 3).all()  # three patients drawn per resample
    assert set(np.unique(w[:, 3])) == {0, 1, 2, 3}


def test_weighted_auc_counts_each_film_as_often_as_it_was_drawn(scores):
    y, p = scores
    p = np.round(p, 1)  # many ties, which count one half
    w = resample_weights(len(y), n_boot=5, seed=2)
    for row, auc in zip(w.astype(int), weighted_auc(y, p, w)):
        idx = np.repeat(np.arange(len(y)), row)
        assert auc == pytest.approx(skm.roc_auc_score(y[idx], p[idx]))
    one_class = weighted_auc(y, p, (y == 1)[None].astype(float))
    assert np.isnan(one_class).all()


def test_intervals_widen_when_a_patients_films_rise_and_fall_together():
    # 60 patients with 10 films each; a patient's films share most of their score, so 600 films
    # carry about as much evidence as 60 patients and the film-level bootstrap overstates it.
    rng = np.random.default_rng(4)
    patients = np.repeat(np.arange(60), 10)
    y = (patients % 2).astype(int)
    p = 1 / (1 + np.exp(-(1.2 * (2 * y - 1) + np.repeat(rng.normal(0, 1.5, 60), 10) + rng.normal(0, 0.3, 600))))
    films, by_patient = bootstrap_ci(y, p, 0.5), bootstrap_ci(y, p, 0.5, clusters=patients)
    for name in ("auc", "accuracy", "sensitivity", "specificity"):
        width = {k: ci[name]["high"] - ci[name]["low"] for k, ci in (("films", films), ("patients", by_patient))}
        assert width["patients"] > 2 * width["films"], name
        assert by_patient[name]["low"] <= threshold_metrics(y, p, 0.5).get(name, ranking_metrics(y, p).get(name)) \
            <= by_patient[name]["high"]
    assert bootstrap_ci(y, p, 0.5, clusters=np.arange(600)) == films  # one film per patient: the same draw


def test_the_report_says_what_its_intervals_resampled(scores):
    y, p = scores
    patients = np.arange(len(y)) // 2
    report = cohort_metrics(y, p, 0.5, patients=patients)
    assert report["ci95_resampled"] == "patients (200, holding 400 films)"
    assert cohort_metrics(y, p, 0.5)["ci95_resampled"] == "films (400)"
    full = evaluate_predictions(y[:200], p[:200], y[200:], p[200:], EvaluateConfig(),
                                patients_val=patients[:200], patients_test=patients[200:])
    assert full["test_ci95_resampled"] == "patients (100, holding 200 films)"
    assert full["test_ci95"] == bootstrap_ci(y[200:], p[200:], full["threshold"]["threshold"],
                                             clusters=patients[200:])


def test_paired_difference_tells_a_better_model_from_the_draw_of_the_films():
    rng = np.random.default_rng(6)
    patients = np.repeat(np.arange(300), 2)
    y = (patients % 2).astype(int)
    truth = 1.5 * (2 * y - 1) + rng.normal(0, 1, 600)
    old = truth + rng.normal(0, 1.5, 600)
    better = truth + rng.normal(0, 0.3, 600)
    twin = truth + rng.normal(0, 1.5, 600)  # as good as old, different errors
    same = paired_auc_difference(y, old, old, patients)
    assert same == {"difference": 0.0, "low": 0.0, "high": 0.0}
    gain = paired_auc_difference(y, better, old, patients)
    assert gain["difference"] == pytest.approx(skm.roc_auc_score(y, better) - skm.roc_auc_score(y, old))
    assert 0 < gain["low"] < gain["difference"] < gain["high"]
    tie = paired_auc_difference(y, twin, old, patients)
    assert tie["low"] < 0 < tie["high"]


def test_a_share_of_films_counts_patients_whose_films_agree_once():
    hits = np.array([True] * 80 + [False] * 20)
    alone = clustered_interval(hits, np.arange(100))
    assert alone == pytest.approx(wilson_interval(80, 100))  # one film per patient: plain Wilson
    agreeing = np.repeat(np.arange(20), 5)  # 16 patients with five hits, 4 with five misses
    assert clustered_interval(hits, agreeing) == pytest.approx(wilson_interval(16, 20))
    mixed = np.tile(np.arange(20), 5)  # every patient 4 hits and 1 miss: no clustering to see
    assert clustered_interval(hits, mixed) == pytest.approx(alone)
    every = np.ones(100, bool)  # all hits: the patients are the sample
    assert clustered_interval(every, agreeing) == pytest.approx(wilson_interval(20, 20))
    assert clustered_interval(every) == pytest.approx(wilson_interval(100, 100))


def test_per_group_sensitivity_counts_patients_and_widens_with_them(scores):
    y, p = scores
    groups = np.where(y == 1, "bacteria", "")
    patients = np.arange(len(y)) // 4  # four films per patient, consecutive
    p = p.copy()
    for patient in np.unique(patients):  # a patient's films score alike
        p[patients == patient] = p[patients == patient].mean()
    films, by_patient = by_group(y, p, groups, 0.5)["bacteria"], by_group(y, p, groups, 0.5, patients)["bacteria"]
    assert films["patients"] == films["count"] and by_patient["patients"] == len(np.unique(patients[y == 1]))
    assert by_patient["sensitivity"] == films["sensitivity"]
    wide = by_patient["sensitivity_ci95"]["high"] - by_patient["sensitivity_ci95"]["low"]
    assert wide > 1.3 * (films["sensitivity_ci95"]["high"] - films["sensitivity_ci95"]["low"])


def test_each_subgroup_gets_its_own_sensitivity_specificity_and_auc_with_patient_aware_intervals():
    rng = np.random.default_rng(3)
    y = np.tile([0, 1], 60)
    groups = np.repeat(["scanner A", "scanner B", ""], 40)
    p = np.where(groups == "scanner B", rng.uniform(0, 1, 120), np.clip(0.2 + 0.6 * y + rng.normal(0, 0.1, 120), 0, 1))
    patients = np.arange(120) // 4  # four films each
    out = by_subgroup(y, p, groups, 0.5, patients)
    assert set(out) == {"scanner A", "scanner B"}  # unknown ("") is left out
    for name, g in out.items():
        chosen = groups == name
        assert (g["films"], g["patients"], g["pneumonia"]) == (40, 10, 20)
        assert g["auc"] == pytest.approx(skm.roc_auc_score(y[chosen], p[chosen]))
        assert g["sensitivity"] == pytest.approx(np.mean(p[chosen & (y == 1)] >= 0.5))
        assert g["specificity"] == pytest.approx(np.mean(p[chosen & (y == 0)] < 0.5))
        hits = p[chosen & (y == 0)] < 0.5
        assert g["specificity_ci95"] == pytest.approx(clustered_interval(hits, patients[chosen & (y == 0)]))
    assert out["scanner A"]["auc"] > 0.95 > out["scanner B"]["auc"]  # the total would hide scanner B
    one_class = by_subgroup(np.zeros(3, int), np.array([0.1, 0.9, 0.2]), np.array(["x"] * 3), 0.5)
    assert "sensitivity" not in one_class["x"] and np.isnan(one_class["x"]["auc"])
    assert one_class["x"]["specificity"] == pytest.approx(2 / 3) and one_class["x"]["patients"] == 3
