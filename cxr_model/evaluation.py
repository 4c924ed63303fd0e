"""Pick the decision threshold on validation only, then score the held-out test split."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from cxr_model.config import EvaluateConfig


def confusion(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, int]:
    """Counts with pneumonia as the positive class; p >= threshold predicts pneumonia."""
    pred = p >= threshold
    y = y.astype(bool)
    return {
        "tp": int(np.sum(pred & y)),
        "fp": int(np.sum(pred & ~y)),
        "tn": int(np.sum(~pred & ~y)),
        "fn": int(np.sum(~pred & y)),
    }


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else float("nan")


def threshold_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy, balanced accuracy, sensitivity, specificity, precision, F1 and the counts."""
    c = confusion(y, p, threshold)
    sens = _ratio(c["tp"], c["tp"] + c["fn"])
    spec = _ratio(c["tn"], c["tn"] + c["fp"])
    prec = _ratio(c["tp"], c["tp"] + c["fp"])
    f1 = _ratio(2 * prec * sens, prec + sens) if c["tp"] else 0.0
    return {
        "threshold": float(threshold),
        "accuracy": _ratio(c["tp"] + c["tn"], len(y)),
        "balanced_accuracy": (sens + spec) / 2,
        "sensitivity": sens,
        "specificity": spec,
        "precision": prec,
        "f1": f1,
        **c,
    }


def ranking_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Threshold-free metrics (NaN when only one class is present)."""
    if len(np.unique(y)) < 2:
        return {"auc": float("nan"), "average_precision": float("nan")}
    return {"auc": float(roc_auc_score(y, p)), "average_precision": float(average_precision_score(y, p))}


def calibration(y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict:
    """Brier score, expected calibration error and the reliability table (equal-width bins): class
    weights and label smoothing make the score rank well without meaning a probability."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    if not len(y):
        return {"brier": float("nan"), "ece": float("nan"), "bins": []}
    which = np.minimum((p * bins).astype(int), bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        inside = which == b
        if not inside.any():
            continue
        mean_p, observed = float(p[inside].mean()), float(y[inside].mean())
        ece += inside.sum() / len(y) * abs(mean_p - observed)
        table.append({"low": b / bins, "high": (b + 1) / bins, "count": int(inside.sum()),
                      "mean_predicted": mean_p, "observed": observed})
    return {"brier": float(np.mean((p - y) ** 2)), "ece": float(ece), "bins": table}


def roc_points(y: np.ndarray, p: np.ndarray) -> pd.DataFrame:
    """The test ROC as a table, for `dvc plots`."""
    fpr, tpr, thresholds = roc_curve(y, p)
    return pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": np.minimum(thresholds, 1.0)})


def _youden_by_cut(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct scores s_j and Youden's J of the rule p >= s_j for each."""
    scores = np.unique(p)
    pos, neg = p[y == 1], p[y == 0]
    pos_sorted, neg_sorted = np.sort(pos), np.sort(neg)
    sens = 1.0 - np.searchsorted(pos_sorted, scores, side="left") / len(pos)
    spec = np.searchsorted(neg_sorted, scores, side="left") / len(neg)
    return scores, sens + spec - 1.0


def choose_threshold(y_val: np.ndarray, p_val: np.ndarray, cfg: EvaluateConfig) -> dict[str, float | str]:
    """Decision threshold from validation predictions, by the method named in params.

    youden_midrange: every cut whose J is within `youden_tolerance` of the best counts as
    equally good; the threshold is the middle of the span they cover. On a nearly separable
    validation split the best cut alone sits at an arbitrary edge of a wide plateau (measured:
    0.05), which costs specificity on a test cohort that differs; the middle is robust.
    """
    method = cfg.threshold_method
    if method == "fixed":
        return {"threshold": cfg.fixed_threshold, "method": method}
    if len(np.unique(y_val)) < 2:
        return {"threshold": cfg.fixed_threshold, "method": "fixed",
                "note": "validation has one class only; fell back to fixed_threshold"}
    scores, youden = _youden_by_cut(y_val, p_val)
    if method == "target_sensitivity":
        pos = np.sort(p_val[y_val == 1])
        # highest cut that still keeps at least the target share of positives at or above it
        k = int(np.floor((1.0 - cfg.target_sensitivity) * len(pos) + 1e-9))
        threshold = float(pos[min(k, len(pos) - 1)])
        return {"threshold": threshold, "method": method, "target_sensitivity": cfg.target_sensitivity}
    best = float(youden.max())
    good = np.flatnonzero(youden >= best - cfg.youden_tolerance)
    # cut j applies to every threshold in (s_{j-1}, s_j]
    lower = float(scores[good.min() - 1]) if good.min() > 0 else 0.0
    upper = float(scores[good.max()])
    return {
        "threshold": (lower + upper) / 2.0,
        "method": method,
        "best_youden": best,
        "best_youden_threshold": float(scores[int(np.argmax(youden))]),
        "range_low": lower,
        "range_high": upper,
    }


def cluster_index(n: int, clusters: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Each of n films' cluster (patient) as 0..k-1, and k; each film its own when None."""
    _, cluster_of = np.unique(np.arange(n) if clusters is None else np.asarray(clusters), return_inverse=True)
    return cluster_of, int(cluster_of.max()) + 1 if n else 0


def resample_weights(n: int, n_boot: int, seed: int, clusters: np.ndarray | None = None) -> np.ndarray:
    """(n_boot, n) bootstrap weights of n films: each resample draws the clusters (patients; each
    film its own when None) with replacement, and a film counts as often as its patient was drawn.
    A patient's films are not independent (the test split holds up to 9 per patient), so
    resampling films alone can narrow the intervals."""
    cluster_of, k = cluster_index(n, clusters)
    draws = np.random.default_rng(seed).integers(0, k, (n_boot, k))
    counts = np.bincount((draws + k * np.arange(n_boot)[:, None]).ravel(), minlength=n_boot * k)
    return counts.reshape(n_boot, k)[:, cluster_of].astype(np.float64)


def percentile_interval(values, level: float = 0.95) -> dict[str, float]:
    """The central `level` share of bootstrap values, the undefined ones (a class not drawn) left
    out; NaN when none is left."""
    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr)]
    if not len(arr):
        return {"low": float("nan"), "high": float("nan")}
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(arr, [tail, 100 - tail])
    return {"low": float(low), "high": float(high)}


def weighted_auc(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """AUC (ties count one half) of one scoring under each row of weights w (n_boot, n): the
    Mann-Whitney form with every film counted w times; NaN where a class got no weight."""
    order = np.argsort(p, kind="stable")
    ps, pos = p[order], np.asarray(y, dtype=bool)[order]
    ws = w[:, order]
    # Negative weight at or below each position; ties share the span [first, last] of equal scores.
    below_or_at = np.cumsum(ws * ~pos, axis=1)
    cum = np.concatenate([np.zeros((len(w), 1)), below_or_at], axis=1)
    first = np.searchsorted(ps, ps, side="left")
    last = np.searchsorted(ps, ps, side="right")
    below, tied = cum[:, first], cum[:, last] - cum[:, first]
    n_pos, n_neg = (ws * pos).sum(1), (ws * ~pos).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((ws * pos) * (below + 0.5 * tied)).sum(1) / (n_pos * n_neg)


def threshold_interval(y_val: np.ndarray, p_val: np.ndarray, cfg: EvaluateConfig, n_boot: int = 200,
                       seed: int = 0, level: float = 0.95, clusters: np.ndarray | None = None) -> dict[str, float]:
    """Percentile interval of the chosen threshold over bootstrap resamples of the validation
    split (by patient when `clusters` names each film's patient): on a nearly separable split
    the rule's pick moves with which films happened to be drawn (0.15-0.33 over six runs,
    results.md SP1), and one run's accuracy depends on it."""
    y_val, p_val = np.asarray(y_val), np.asarray(p_val, dtype=float)
    picks = []
    for weights in resample_weights(len(y_val), n_boot, seed, clusters).astype(int):
        idx = np.repeat(np.arange(len(y_val)), weights)
        if len(np.unique(y_val[idx])) == 2:
            picks.append(float(choose_threshold(y_val[idx], p_val[idx], cfg)["threshold"]))
    if not picks:  # one class, or a film or two: no resample holds both classes
        point = float(choose_threshold(y_val, p_val, cfg)["threshold"])
        return {"low": point, "high": point}
    return percentile_interval(picks, level)


def bootstrap_ci(
    y: np.ndarray, p: np.ndarray, threshold: float, n_boot: int = 2000, seed: int = 0, level: float = 0.95,
    clusters: np.ndarray | None = None,
) -> dict[str, dict[str, float]]:
    """Percentile bootstrap intervals, resampling patients when `clusters` names each film's
    patient (else films): a 600-image test set leaves points of sampling error, and more when
    a patient's films rise and fall together."""
    y, p = np.asarray(y).astype(bool), np.asarray(p, dtype=float)
    w = resample_weights(len(y), n_boot, seed, clusters)
    values = {"auc": weighted_auc(y, p, w), **weighted_rates(y, p >= threshold, w)}
    return {name: percentile_interval(arr, level) for name, arr in values.items()}


def weighted_rates(y: np.ndarray, called: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, sensitivity, specificity, precision, F1 and balanced accuracy of one set of calls
    under each row of weights w (n_boot, n); NaN where a rate's films got no weight."""
    y, called = np.asarray(y, dtype=bool), np.asarray(called, dtype=bool)
    tp, fp = w @ (called & y), w @ (called & ~y)
    tn, fn = w @ (~called & ~y), w @ (~called & y)
    with np.errstate(invalid="ignore", divide="ignore"):
        sens, spec, prec = tp / (tp + fn), tn / (tn + fp), tp / (tp + fp)
        return {"accuracy": (tp + tn) / w.sum(1), "sensitivity": sens, "specificity": spec, "precision": prec,
                "f1": 2 * prec * sens / (prec + sens), "balanced_accuracy": (sens + spec) / 2}


def paired_auc_difference(y: np.ndarray, p_new: np.ndarray, p_old: np.ndarray, clusters: np.ndarray | None = None,
                          n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict[str, float]:
    """AUC of p_new minus AUC of p_old on the same films, with a paired bootstrap interval (the
    same patients redrawn for both): whether one model really scores better or the gap is the
    draw of the evaluation films."""
    y, p_new, p_old = np.asarray(y), np.asarray(p_new, dtype=float), np.asarray(p_old, dtype=float)
    w = resample_weights(len(y), n_boot, seed, clusters)
    interval = percentile_interval(weighted_auc(y, p_new, w) - weighted_auc(y, p_old, w), level)
    point = ranking_metrics(y, p_new)["auc"] - ranking_metrics(y, p_old)["auc"]
    return {"difference": float(point), **interval}


PAIRED_RATES = ("accuracy", "sensitivity", "specificity")


def paired_rate_differences(y: np.ndarray, called_new: np.ndarray, called_old: np.ndarray,
                            clusters: np.ndarray | None = None, n_boot: int = 2000, seed: int = 0,
                            level: float = 0.95) -> dict[str, dict[str, float]]:
    """Accuracy, sensitivity and specificity of one model's calls minus another's on the same
    films (each at its own threshold), with paired bootstrap intervals drawn as
    `paired_auc_difference` draws them: the operating points a clinic would use, not only the
    ranking."""
    w = np.vstack([np.ones(len(y)), resample_weights(len(y), n_boot, seed, clusters)])  # row 0: the films as they are
    new, old = weighted_rates(y, called_new, w), weighted_rates(y, called_old, w)
    return {name: {"difference": float(new[name][0] - old[name][0]),
                   **percentile_interval(new[name][1:] - old[name][1:], level)} for name in PAIRED_RATES}


def wilson_interval(k: float, n: float, level: float = 0.95) -> dict[str, float]:
    """Interval for a proportion that stays inside [0, 1] for small groups and rates near 1; k and
    n may be effective (fractional) counts, as for films clustered in patients."""
    if not n:
        return {"low": float("nan"), "high": float("nan")}
    z = float(norm.ppf(0.5 + level / 2))
    share, shrink = k / n, 1 + z * z / n
    centre = (share + z * z / (2 * n)) / shrink
    half = z * np.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / shrink
    return {"low": float(max(0.0, centre - half)), "high": float(min(1.0, centre + half))}


def clustered_interval(hits: np.ndarray, clusters: np.ndarray | None = None, level: float = 0.95) -> dict[str, float]:
    """Wilson interval of a share of films, on the effective number of films once a patient's films
    are allowed to agree: n divided by the design effect (the cluster-robust variance over the
    independent one, between 1 and the mean films per patient; that mean when every film agrees)."""
    hits = np.asarray(hits, dtype=bool)
    n = len(hits)
    if not n:
        return wilson_interval(0, 0, level)
    cluster_of, k = cluster_index(n, clusters)
    share = float(hits.mean())
    if k == n:
        effect = 1.0
    elif 0.0 < share < 1.0:
        spread = np.bincount(cluster_of, weights=hits) - share * np.bincount(cluster_of)
        robust = k / (k - 1) * float(np.sum(spread ** 2)) / n ** 2 if k > 1 else float("inf")
        effect = float(np.clip(robust / (share * (1 - share) / n), 1.0, n / k))
    else:
        effect = n / k
    return wilson_interval(share * n / effect, n / effect, level)


def by_group(y: np.ndarray, p: np.ndarray, groups: np.ndarray, threshold: float,
             patients: np.ndarray | None = None) -> dict[str, dict]:
    """Per group of positives (named; "" = unknown, skipped): how many films (and patients), the
    sensitivity with its Wilson interval (on the effective count when patients are named), and
    the AUC of that group against every negative."""
    y, p, groups = np.asarray(y), np.asarray(p, dtype=float), np.asarray(groups)
    out = {}
    for name in sorted(set(groups[y == 1]) - {""}):
        pos = (y == 1) & (groups == name)
        hits, n = p[pos] >= threshold, int(pos.sum())
        who = None if patients is None else np.asarray(patients)[pos]
        keep = pos | (y == 0)
        out[str(name)] = {"count": n, "patients": n if who is None else int(len(np.unique(who))),
                          "sensitivity": float(hits.mean()), "sensitivity_ci95": clustered_interval(hits, who),
                          "auc": ranking_metrics(y[keep], p[keep])["auc"]}
    return out


def by_subgroup(y: np.ndarray, p: np.ndarray, groups: np.ndarray, threshold: float,
                patients: np.ndarray | None = None) -> dict[str, dict]:
    """Per value of a subgroup (a site's scanner, series, sex, age band; "" = unknown, skipped):
    films, patients, sensitivity and specificity with their Wilson intervals (on the effective
    count when patients are named), and the AUC where both classes are present. A total can hide
    a subgroup the model fails: on the test split, one NORMAL file series held most errors."""
    y, p, groups = np.asarray(y), np.asarray(p, dtype=float), np.asarray(groups).astype(str)
    out = {}
    for name in sorted(set(groups) - {""}):
        chosen = groups == name
        yy, pp = y[chosen], p[chosen]
        who = None if patients is None else np.asarray(patients)[chosen]
        entry = {"films": int(chosen.sum()), "patients": int(chosen.sum()) if who is None else int(len(np.unique(who))),
                 "pneumonia": int(yy.sum()), "auc": ranking_metrics(yy, pp)["auc"]}
        for label, figure, right in ((1, "sensitivity", pp >= threshold), (0, "specificity", pp < threshold)):
            of = yy == label
            if of.any():
                entry[figure] = float(right[of].mean())
                entry[f"{figure}_ci95"] = clustered_interval(right[of], None if who is None else who[of])
        out[name] = entry
    return out


FIGURES = ("auc", "accuracy", "sensitivity", "specificity")


def describe(values: dict, ci: dict | None = None, names: tuple[str, ...] = FIGURES, dash: str = "-") -> str:
    """"auc 0.972 (0.961-0.983), accuracy ..." for the names present in `values`, each with its
    interval where `ci` has one: the one way figures are put into a sentence."""
    def one(name: str) -> str:
        interval = f" ({ci[name]['low']:.3f}{dash}{ci[name]['high']:.3f})" if ci and name in ci else ""
        return f"{name} {values[name]:.3f}{interval}"

    return ", ".join(one(name) for name in names if name in values)


def cohort_metrics(y: np.ndarray, p: np.ndarray, threshold: float, groups: np.ndarray | None = None,
                   threshold_ci95: dict | None = None, patients: np.ndarray | None = None) -> dict:
    """Everything reported for one scored cohort: ranking and threshold metrics, the same at 0.5,
    bootstrap intervals (resampling patients when `patients` names them), calibration, with the
    positives' groups sensitivity per group, and with the threshold's validation interval the
    threshold metrics at both its ends (reported, never used to choose: how much of the
    accuracy is the threshold's luck)."""
    report = {
        "metrics": {**ranking_metrics(y, p), **threshold_metrics(y, p, threshold)},
        "at_0_5": threshold_metrics(y, p, 0.5),
        "ci95": bootstrap_ci(y, p, threshold, clusters=patients) if len(y) else {},
        "ci95_resampled": _resampled(y, patients),
        "calibration": calibration(y, p),
        "by_type": by_group(y, p, groups, threshold, patients) if groups is not None else {},
        "count": int(len(y)),
    }
    if threshold_ci95:
        report["at_threshold_ci95"] = {end: threshold_metrics(y, p, threshold_ci95[end]) for end in ("low", "high")}
    return report


def _resampled(y: np.ndarray, patients: np.ndarray | None) -> str:
    """What the intervals' bootstrap drew, for the reader: patients (how many) or films."""
    if patients is None:
        return f"films ({len(y)})"
    return f"patients ({len(np.unique(patients))}, holding {len(y)} films)"


def evaluate_predictions(
    y_val: np.ndarray, p_val: np.ndarray, y_test: np.ndarray, p_test: np.ndarray, cfg: EvaluateConfig,
    groups_val: np.ndarray | None = None, groups_test: np.ndarray | None = None,
    patients_val: np.ndarray | None = None, patients_test: np.ndarray | None = None,
) -> dict:
    """The metrics.json content: threshold from validation, test at it and at 0.5; with the
    positives' groups (pneumonia type), sensitivity per group; with the films' patients, every
    interval from resampling patients."""
    choice = choose_threshold(y_val, p_val, cfg)
    t = float(choice["threshold"])
    choice["ci95"] = threshold_interval(y_val, p_val, cfg, clusters=patients_val)
    test = cohort_metrics(y_test, p_test, t, groups_test, choice["ci95"], patients_test)
    return {
        "threshold": choice,
        "test": test["metrics"],
        "test_at_0_5": test["at_0_5"],
        "test_at_threshold_ci95": test["at_threshold_ci95"],
        "test_ci95": test["ci95"],
        "test_ci95_resampled": test["ci95_resampled"],
        "val": {**ranking_metrics(y_val, p_val), **threshold_metrics(y_val, p_val, t)},
        "calibration": {"val": calibration(y_val, p_val), "test": test["calibration"]},
        "by_type": {**({"val": by_group(y_val, p_val, groups_val, t, patients_val)} if groups_val is not None else {}),
                    **({"test": test["by_type"]} if groups_test is not None else {})},
        "counts": {"val": int(len(y_val)), "test": int(len(y_test))},
    }
