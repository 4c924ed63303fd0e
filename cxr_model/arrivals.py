"""The champion on the films that arrived since it was trained: before new films become training
data they are the one labelled sample the deployed model has never met, so its figures there are
the closest a retrain gets to how it does on the films now being taken."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cxr_model import evaluation, film_stats


def patient_keys(manifest: pd.DataFrame) -> pd.Series:
    """Patient keys that can be compared between manifests: the Kermany test folder numbers its
    patients apart from the training folder's (person1 in test is not person1 in train)."""
    pool = manifest["split"].where(manifest["split"] == "test", "train")
    return pool + ":" + manifest["patient_id"].astype(str)


def new_films(current: pd.DataFrame, seen: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The readable films of the current manifest whose content the champion's manifest did not
    hold, less those of patients it held (their other films may have trained it), and how many
    were left out for that. The rows keep their index, to find their decoded pixels by."""
    readable = current[current["error"] == ""]
    new = readable[~readable["sha256"].isin(set(seen["sha256"]))]
    known = patient_keys(new).isin(set(patient_keys(seen)))
    return new[~known], int(known.sum())


def champion_figures(y: np.ndarray, p: np.ndarray, threshold: float, patients: np.ndarray) -> dict:
    """Counts, and the metrics at the champion's threshold: with both classes the AUC too and
    intervals redrawing patients; with one class only the share of it called right."""
    y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    out = {"films": int(len(y)), "patients": int(len(np.unique(patients))), "pneumonia": int(y.sum())}
    if not len(y):
        return out
    if len(np.unique(y)) == 2:
        out["metrics"] = {**evaluation.ranking_metrics(y, p), **evaluation.threshold_metrics(y, p, threshold)}
        out["ci95"] = evaluation.bootstrap_ci(y, p, threshold, clusters=np.asarray(patients))
    else:
        m = evaluation.threshold_metrics(y, p, threshold)
        name = "sensitivity" if y[0] == 1 else "specificity"
        out["metrics"] = {"threshold": m["threshold"], name: m[name], "accuracy": m["accuracy"]}
    return out


def film_shift(training_films: dict | None, pixels: np.ndarray, y: np.ndarray) -> dict | None:
    """How the arrived films (as the champion reads them) differ from its training films, per class
    (film_stats): each Kolmogorov-Smirnov distance, and a line for each statistic that differs.
    None when the champion's card holds no training-film reference, or nothing arrived."""
    if not training_films or not len(pixels):
        return None
    shift = film_stats.compare(training_films, film_stats.film_statistics(pixels), y)
    return {"ks": {g: dict(zip(rows["statistic"], rows["ks"])) for g, rows in shift.groupby("group")},
            "differs": [f"{r.statistic} of {r.group} films (KS {r.ks:.2f})"
                        for r in film_stats.differing(shift).itertuples()]}


def summary(figures: dict, version: str) -> str:
    """One line for the log, the flow's closing lines and the version's tag."""
    if not figures.get("films"):
        return f"champion version {version}: no films of new patients since it was trained"
    m = figures["metrics"]
    shown = evaluation.describe(m, figures.get("ci95"), ("auc", "sensitivity", "specificity"))
    films, patients = figures["films"], figures["patients"]
    differs = (figures.get("film_shift") or {}).get("differs")
    unlike = f"; the films differ from its training films in {', '.join(differs)}" if differs else ""
    return (f"champion version {version} on the {films} film{'s' * (films != 1)} of {patients} "
            f"new patient{'s' * (patients != 1)} ({figures['pneumonia']} PNEUMONIA) since it was trained: "
            f"{shown} at its threshold {m['threshold']:.3f}{unlike}")
