"""The model card stored with every registered version: what the model is for, what it was
trained on, how good it is (with uncertainty) and where it must not be trusted."""

from __future__ import annotations

import platform
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version

PACKAGES = ("cxr", "tensorflow-cpu", "keras", "numpy", "pillow", "pydicom", "mlflow", "scikit-learn")

INTENDED_USE = (
    "Decision support for reading pediatric (age 1-5) frontal (PA/AP) chest X-rays: flags films "
    "likely to show pneumonia for a clinician's review. Not a diagnosis; a clinician reads every film."
)
LIMITATIONS = [
    "Trained on one hospital's pediatric films (Guangzhou Women and Children's Medical Center); "
    "other scanners, sites and populations may behave differently: measure it on your own labelled "
    "films before use (`cxr assess FOLDER`).",
    "Adult films, lateral views, CT slices and non-chest images are out of distribution. A DICOM "
    "file whose header names another modality, body part or view, or an adult patient, is refused; "
    "a JPEG or PNG carries no such facts, and the model still outputs a probability for it. Cheap "
    "plausibility checks on the pixels refuse only clearly wrong inputs (colour, blank, tiny, "
    "extreme shape).",
    "The validation split comes from the same hospital and shares its way of taking films, so "
    "validation metrics overstate performance on new cohorts; the test metrics of this card are the "
    "honest estimate, with bootstrap 95 % intervals.",
    "NORMAL films with less fine detail than the training films (softer, more compressed or "
    "downsampled) are over-called: on the test split's smoother NORMAL file series the default "
    "configuration called about three in four normal (seven seeds), against 97 % of the other series. "
    "`cxr assess` says, per class, whether a site's labelled films differ from the training films "
    "in fine detail, brightness or contrast; `cxr predict` checks an unlabelled batch as a whole, "
    "which shows less of a difference confined to its NORMAL films.",
    "Separates NORMAL from PNEUMONIA only (bacterial and viral together); other findings are not detected.",
    "Images are squashed to a square without keeping the aspect ratio, as the training data was. How "
    "squashed a film looks differed between the training classes; training stretches films at random "
    "so the model leans on it far less (see the shortcut probes), but films squashed very differently "
    "from these may still be over- or under-called.",
]


def software_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _threshold_interval_lines(th: dict) -> list[str]:
    from cxr_model.prediction import borderline_band

    ci, acc = th.get("ci95"), th.get("test_accuracy_at_ci95") or {}
    if borderline_band(ci) is None:
        return []
    return ["", f"Drawn again from resampled validation patients, the same rule would put it anywhere in "
                f"{ci['low']:.3f}–{ci['high']:.3f} (95 %), and test accuracy at those ends would be "
                f"{_pct(acc['low'])} and {_pct(acc['high'])}: read the accuracy, sensitivity and "
                f"specificity below with that in mind. A score inside that interval is marked borderline "
                f"by `cxr predict` and the served model."]


def build_card(
    name: str, ingest: dict, train: dict, metrics: dict, model_info: dict, git_commit: str, run_id: str
) -> dict:
    """The card as a dict (stored as JSON; the Markdown is rendered from it)."""
    from cxr_model.probes import normal_ratios

    threshold = metrics["threshold"]
    return {
        "model": name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "run_id": run_id,
        "git_commit": git_commit,
        "intended_use": INTENDED_USE,
        "training_data": {
            "source": ingest.get("source"), "dvc_md5": ingest.get("dvc_version"),
            "manifest_fingerprint": ingest.get("fingerprint"), "counts": ingest.get("counts"),
            "duplicates_dropped": ingest.get("duplicates_dropped"),
            "validation_split": "patient-grouped, stratified, taken from train",
        },
        "model_details": {**model_info, "epochs_run": train.get("epochs_run"),
                          "best_epoch": train.get("best_epoch"), "train_seconds": train.get("train_seconds")},
        "threshold": {
            "value": threshold["threshold"], "method": threshold["method"],
            "how_chosen": "on the patient-grouped validation split only, never on test; "
                          + {"youden_midrange": "middle of the range of thresholds whose Youden J is "
                                                "within the tolerance of the best",
                             "target_sensitivity": "highest threshold keeping the target validation sensitivity",
                             "fixed": "fixed value from params"}.get(threshold["method"], threshold["method"]),
            "ci95": threshold.get("ci95"),
            "test_accuracy_at_ci95": {end: m["accuracy"] for end, m in metrics.get("test_at_threshold_ci95", {}).items()},
        },
        "test_metrics": {k: metrics["test"][k] for k in
                         ("auc", "accuracy", "sensitivity", "specificity", "precision", "f1", "balanced_accuracy")},
        "test_ci95": metrics.get("test_ci95", {}),
        "test_ci95_resampled": metrics.get("test_ci95_resampled"),
        "test_at_0_5": {k: metrics["test_at_0_5"][k] for k in ("accuracy", "sensitivity", "specificity")},
        "test_images": metrics.get("counts", {}).get("test"),
        "validation_auc": metrics["val"]["auc"],
        "validation_auc_aspect_jittered": metrics.get("val_aspect_jitter_auc"),
        "calibration": {split: {k: cal[k] for k in ("brier", "ece")}
                        for split, cal in metrics.get("calibration", {}).items()},
        "sensitivity_by_type": metrics.get("by_type", {}).get("test", {}),
        "shortcut_probes": {name: round(ratio, 2) for name, ratio in normal_ratios(metrics.get("val_probes", {})).items()},
        "limitations": LIMITATIONS,
        "software": software_versions(),
    }


def _pct(v: float) -> str:
    return f"{100 * v:.1f} %"


def _probe_lines(ratios: dict[str, float], jittered_auc: float | None = None) -> list[str]:
    """How the score of validation NORMAL films moves when one thing about the film changes."""
    if not ratios:
        return []
    from cxr_model.probes import PROBES

    listed = ", ".join(f"{PROBES[n][0] if n in PROBES else n} ×{r:.1f}" for n, r in ratios.items())
    return ["## Shortcut probes (validation films)",
            "Mean P(pneumonia) of the validation NORMAL films when only their framing, aspect, exposure, "
            "sharpness, corner markers, tilt, noise, resolution or compression change, as a multiple "
            "of the unchanged films' (×1.0: no effect; large values warn that films from another "
            f"site may be over-called): {listed}.",
            *([] if jittered_auc is None else [
                "", f"Validation AUC with every film stretched along a random axis by up to 30 % (the squash "
                f"of the sources scrambled): {jittered_auc:.4f}."]), ""]


def _calibration_lines(cal: dict[str, dict[str, float]]) -> list[str]:
    """Why the score must not be read as a probability."""
    if "test" not in cal:
        return []
    val = cal.get("val", {})
    beside = f" (validation {val['brier']:.3f} and {val['ece']:.3f})" if val else ""
    return ["## Calibration",
            f"Brier score {cal['test']['brier']:.3f} and expected calibration error {cal['test']['ece']:.3f} "
            f"on test{beside}, 10 equal-width bins. The score ranks films; it is not the probability of "
            "pneumonia: class weights and label smoothing shift it during training, and films from another "
            "site shift it again (the reliability diagram, `evaluation/reliability.png`). Use the decision "
            "threshold, not the score's value, to call a film.", ""]


def _type_lines(by_type: dict[str, dict]) -> list[str]:
    """A total sensitivity can hide a pneumonia type the model misses."""
    if not by_type:
        return []
    rows = [f"| {name} | {g['count']} ({g.get('patients', g['count'])}) | {_pct(g['sensitivity'])} "
            f"({_pct(g['sensitivity_ci95']['low'])} – {_pct(g['sensitivity_ci95']['high'])}) | {g['auc']:.3f} |"
            for name, g in by_type.items()]
    return ["## Sensitivity by pneumonia type (test, at the threshold above)",
            "| type | films (patients) | sensitivity (Wilson 95 % CI, a patient's films allowed to agree) | "
            "AUC against every NORMAL film |",
            "| --- | --- | --- | --- |", *rows, ""]


def render_markdown(card: dict) -> str:
    """Human-readable card."""
    t, ci = card["test_metrics"], card["test_ci95"]
    rows = []
    for key in ("auc", "accuracy", "sensitivity", "specificity", "precision", "f1", "balanced_accuracy"):
        fmt = (lambda v: f"{v:.3f}") if key == "auc" else _pct
        interval = f"{fmt(ci[key]['low'])} – {fmt(ci[key]['high'])}" if key in ci else "n/a"
        rows.append(f"| {key.replace('_', ' ')} | {fmt(t[key])} | {interval} |")
    data = card["training_data"]
    counts = data.get("counts") or {}
    count_lines = [f"- {split}: " + ", ".join(f"{label} {n}" for label, n in labels.items())
                   for split, labels in counts.items()]
    th = card["threshold"]
    at05 = card["test_at_0_5"]
    version = f" version {card['version']}" if card.get("version") else ""
    return "\n".join([
        f"# Model card: {card['model']}{version}",
        "",
        f"Created {card['created']} from MLflow run `{card['run_id']}` (code `{card['git_commit'][:12]}`).",
        "",
        "## Intended use",
        card["intended_use"],
        "",
        "## Training data",
        f"Source `{data['source']}`, DVC version `{data['dvc_md5']}`, manifest fingerprint "
        f"`{data['manifest_fingerprint']}`; {data['duplicates_dropped']} byte-identical duplicates dropped; "
        f"validation split {data['validation_split']}.",
        *count_lines,
        "",
        *_film_lines(card.get("training_films") or {}),
        "## Model",
        ", ".join(f"{k} {v}" for k, v in card["model_details"].items()),
        "",
        "## Decision threshold",
        f"{th['value']:.4f} ({th['method']}): {th['how_chosen']}.",
        *_threshold_interval_lines(th),
        "",
        f"## Test metrics ({card['test_images']} held-out images, at the threshold above)",
        *([f"The intervals resample {card['test_ci95_resampled']}: a patient's films count together.", ""]
          if str(card.get("test_ci95_resampled", "")).startswith("patients") else []),
        "| metric | value | bootstrap 95 % CI |",
        "| --- | --- | --- |",
        *rows,
        "",
        f"At threshold 0.5: accuracy {_pct(at05['accuracy'])}, sensitivity {_pct(at05['sensitivity'])}, "
        f"specificity {_pct(at05['specificity'])}. Validation AUC {card['validation_auc']:.4f}.",
        "",
        *_type_lines(card.get("sensitivity_by_type") or {}),
        *_calibration_lines(card.get("calibration") or {}),
        *_probe_lines(card.get("shortcut_probes") or {}, card.get("validation_auc_aspect_jittered")),
        "## Known limitations",
        *[f"- {item}" for item in card["limitations"]],
        "",
        "## Software",
        ", ".join(f"{k} {v}" for k, v in card["software"].items()),
        "",
    ])


def _film_lines(films: dict) -> list[str]:
    """The training films' statistics (film_stats), median and quartiles per class: what a site's
    own films are compared with by `cxr assess` and `cxr predict`."""
    pct = films.get("percentiles") or {}
    groups = [g for g in ("NORMAL", "PNEUMONIA") if g in (films.get("films") or {})]
    if not pct or not groups:
        return []
    lines = ["Training films as the model reads them (median, quartiles; `cxr assess` compares a cohort's "
             "films with these, `cxr predict` a batch's):", "", "| statistic | " + " | ".join(groups) + " |",
             "| --- |" + " --- |" * len(groups)]
    from cxr_model.film_stats import value_format

    for name, per_group in pct.items():
        fmt = value_format(name)
        cells = [f"{fmt.format(per_group[g][50])} ({fmt.format(per_group[g][25])}–{fmt.format(per_group[g][75])})"
                 for g in groups]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return [*lines, ""]


MEASURED_TAGS = ("promotion.decision", "assessment.", "arrivals.")


def measured_since(tags: dict[str, str]) -> dict[str, str]:
    """The registry tags that record what was learnt of a version after its card was written:
    its promotion, its figures on sites' cohorts (`cxr assess`), and, as champion, on the films
    that arrived after it (the promote step)."""
    return {key: tags[key] for key in sorted(tags) if key.startswith(MEASURED_TAGS)}


def render_measured(measured: dict[str, str]) -> str:
    """The card's closing section, from `measured_since`."""
    lines = ["", "## Measured since registration", ""]
    if not measured:
        return "\n".join(lines + ["Nothing yet: no promotion decision, assessment or arrival recorded.", ""])
    names = {"promotion.decision": "promotion"}
    for key, value in measured.items():
        label = names.get(key) or key.replace("assessment.", "on cohort ").replace("arrivals.v", "as champion, arrivals before version ")
        lines.append(f"- {label}: {value}")
    return "\n".join(lines + [""])
