"""Assess a model on a labelled cohort of the user's own (another site, a later year): the test
split measures one cohort, and a site deciding whether to use the model needs its own figures."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from cxr_model import evaluation, film_stats, plots
from cxr_model.config import Config
from cxr_model.data import LABELS, patient_id, pneumonia_type
from cxr_model.errors import DataError
from cxr_model.prediction import content_fingerprint, is_film_file

IDENTIFIERS = ["patient", "listed_patient"]  # read for grouping films by patient, written nowhere
SUBGROUP = "subgroup."  # prefix of the columns a site's film list adds (scanner, series, ...)


def labelled_files(folder: Path) -> pd.DataFrame:
    """Every film below `folder` (an image suffix, or DICOM under any name) with its label from the
    nearest enclosing NORMAL or PNEUMONIA folder (any depth, any case: the Kaggle layout works as
    it is); films outside such folders are skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"cohort folder not found: {folder}")
    names = {label.lower(): index for index, label in enumerate(LABELS)}
    rows = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        parents = [part.lower() for part in path.relative_to(folder).parts[:-1]]
        label = next((names[part] for part in reversed(parents) if part in names), None)
        if label is not None and is_film_file(path):  # outside a class folder: not even opened
            rows.append({"path": str(path), "y": label, "type": pneumonia_type(path.name) if label else ""})
    files = pd.DataFrame(rows, columns=["path", "y", "type"])
    counts = files["y"].value_counts()
    missing = [name for index, name in enumerate(LABELS) if not counts.get(index)]
    if missing:
        raise DataError(f"no {' or '.join(missing)} images under {folder}: a cohort needs images in both "
                        f"{LABELS[0]}/ and {LABELS[1]}/ folders (at any depth) to measure the model")
    return files


def read_film_list(csv_path: Path, folder: Path, paths: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """The site's own list of its films (CSV): a `file` column (the path below the cohort folder,
    or a file name only one film has), optionally `patient` (files named by accession number say
    nothing about it, and a patient's films counted as independent narrow the intervals), and
    any other columns as subgroups to break the figures down by (scanner, series, sex, age
    band). Returns one row per film of `paths`, in order, and the entries that name no film.
    Every film must be listed."""
    csv_path, folder = Path(csv_path), Path(folder)
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            header = [name.strip().lower() for name in next(csv.reader(handle), [])]
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"film list not found: {csv_path}") from None
    except OSError as error:
        raise DataError(f"film list {csv_path} cannot be read ({error.strerror or error})") from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataError(f"film list {csv_path} is not a readable CSV ({error})") from None
    if "file" not in header or len(header) < 2 or len(set(header)) < len(header):
        raise DataError(f"film list {csv_path} needs a file column and at least one more, each named once "
                        f"(patient, or subgroups such as scanner; it has: {', '.join(header) or 'none'})")
    table.columns = header
    table = table.apply(lambda column: column.str.strip())
    table["file"] = table["file"].str.replace("\\", "/").str.removeprefix("./")
    blank = (table["file"] == "") | ((table["patient"] == "") if "patient" in table else False)
    if blank.any():
        need = "a file and a patient are both needed" if "patient" in table else "a file is needed"
        raise DataError(f"film list {csv_path}, line {int(np.flatnonzero(blank.to_numpy())[0]) + 2}: {need}")
    table = table.drop_duplicates()
    twice = table["file"].duplicated()
    if twice.any():
        raise DataError(f"film list {csv_path} lists {table['file'][twice].iloc[0]} twice, with different values")
    listed = table.set_index("file")
    names = Counter(Path(path).name for path in paths)
    keys, missing = [], []
    for path in paths:
        relative, name = Path(path).relative_to(folder).as_posix(), Path(path).name
        key = relative if relative in listed.index else name if name in listed.index else None
        if key == name and names[name] > 1:
            raise DataError(f"film list {csv_path}: the file name {name} is shared by {names[name]} films; "
                            "give their paths below the cohort folder instead")
        if key is None:
            missing.append(relative)
        keys.append(key)
    if missing:
        raise DataError(f"{len(missing)} of {len(paths)} films are not in {csv_path}, e.g. {', '.join(missing[:3])}: "
                        f"list every film (its path below {folder}, or its file name)")
    return listed.loc[keys].reset_index(drop=True), sorted(set(listed.index) - set(keys))


def with_film_facts(results: pd.DataFrame, listed: pd.DataFrame | None) -> pd.DataFrame:
    """The scored films (in `read_film_list`'s order) with what else is known of them, in memory
    only: the site's list (patient, subgroups), and the DICOM headers' scanner as a subgroup where
    the list has no scanner column."""
    scanners = results.pop("scanner") if "scanner" in results else pd.Series("", index=results.index)
    if listed is not None:
        listed = listed.rename(columns=lambda c: "listed_patient" if c == "patient" else SUBGROUP + c)
        results = pd.concat([results, listed.set_index(results.index)], axis=1)
    if (scanners != "").any() and SUBGROUP + "scanner" not in results:
        results[SUBGROUP + "scanner"] = scanners.to_numpy()
    return results


def patients_source(results: pd.DataFrame, film_list: Path | None) -> str:
    """Where the films' patients came from, for the reader of the intervals."""
    if "listed_patient" in results:
        return f"the list {Path(film_list).name}"
    return "DICOM PatientID, else Kermany file names, else each film its own"


def cohort_name(name: str) -> str:
    """The name checked once: it becomes a folder and part of an MLflow tag key."""
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*", name):
        raise DataError(f"cohort name {name!r} may hold only letters, digits, '.', '_' and '-' "
                        f"(pass --name)")
    return name


def fingerprint(scored: pd.DataFrame) -> str:
    """Hash of the cohort's labels and file contents (the `sha256` that scoring recorded as it
    read each film): the same films give the same fingerprint wherever they sit, so two
    assessments can be told to be on the same cohort."""
    return content_fingerprint(f"{sha or 'unreadable'}:{int(label)}" for sha, label in zip(scored["sha256"], scored["y"]))


def cohort_report(scored: pd.DataFrame, threshold: float, threshold_ci95: dict | None = None) -> dict:
    """Metrics of the scored images (path, y, probability, type, optionally patient and
    `subgroup.<name>` columns) at the model's threshold and at 0.5, with bootstrap intervals
    (resampling patients: cohort_patients), calibration, sensitivity by pneumonia type and the
    figures per subgroup; with the stored threshold's validation interval, the same at both its
    ends (how much rides on where it fell)."""
    y, p = scored["y"].to_numpy(int), scored["probability"].to_numpy(float)
    if len(np.unique(y)) < 2:
        raise DataError("after refusing implausible images, the cohort holds only one class: "
                        "no AUC, sensitivity and specificity can be measured")
    types = scored["type"].fillna("").to_numpy(str)
    patients = np.array(cohort_patients(scored))
    report = evaluation.cohort_metrics(y, p, threshold, types if (types != "").any() else None, threshold_ci95,
                                       patients)
    report["by_subgroup"] = {column.removeprefix(SUBGROUP): evaluation.by_subgroup(
        y, p, scored[column].fillna("").to_numpy(str), threshold, patients)
        for column in scored.columns if column.startswith(SUBGROUP)}
    if "borderline" in scored and scored["borderline"].notna().any():
        inside = scored["borderline"].fillna(False).to_numpy(bool)
        right = (p >= threshold) == (y == 1)
        report["borderline"] = {"count": int(inside.sum()),
                                "accuracy": float(right[inside].mean()) if inside.any() else float("nan"),
                                "accuracy_elsewhere": float(right[~inside].mean()) if (~inside).any() else float("nan")}
    return report


def against(scored: pd.DataFrame, other: pd.DataFrame, threshold: float, source: str,
            own_threshold: float) -> dict:
    """Another model on the same films (`other`: its results for the cohort's files, in order,
    called at `threshold`; this model's at `own_threshold`), and the differences in AUC and, at
    each model's threshold, in accuracy, sensitivity and specificity, with intervals that redraw
    the same patients for both: a site choosing between two models on its own films needs to
    know whether a gap is the films' draw. Films either model refused are left out."""
    films, p_other = both_scored(scored, other)
    y, p = films["y"].to_numpy(int), films["probability"].to_numpy(float)
    if len(np.unique(y)) < 2:
        raise DataError("the films both models scored hold only one class: the models cannot be compared")
    metrics = {**evaluation.ranking_metrics(y, p_other), **evaluation.threshold_metrics(y, p_other, threshold)}
    patients = np.array(cohort_patients(films))
    difference = evaluation.paired_auc_difference(y, p, p_other, patients)
    rates = evaluation.paired_rate_differences(y, p >= own_threshold, p_other >= threshold, patients)
    return {"model": source, "films": len(films), "refused_by_it_only": len(scored) - len(films),
            "metrics": metrics, "auc_difference": difference, "rate_differences": rates}


def both_scored(scored: pd.DataFrame, other: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The films this model scored that the other model scored too, and its scores for them
    (`other`: its results for the cohort's files, indexed as this model's)."""
    both = other.loc[scored.index]
    kept = both["error"].isna().to_numpy()
    return scored[kept], both.loc[kept, "probability"].to_numpy(float)


def film_shift(scored: pd.DataFrame, training_films: dict | None) -> pd.DataFrame | None:
    """How the cohort's films differ from the model's training films, per class (film_stats);
    None when the model's card holds no training-film reference (registered before it did)."""
    if not training_films:
        return None
    return film_stats.compare(training_films, film_stats.columns(scored), scored["y"].to_numpy(int))


def cohort_patients(scored: pd.DataFrame) -> list[str]:
    """Each film's patient: the site's film list where it names them (`listed_patient`), else the
    DICOM header's PatientID, else the patient the Kermany file names give, else the film itself."""
    def column(name: str) -> pd.Series:
        return scored[name].fillna("") if name in scored else pd.Series("", index=scored.index)

    return [f"list:{listed}" if listed else f"dicom:{pid}" if pid else f"name:{patient_id(path)}"
            for listed, pid, path in zip(column("listed_patient"), column("patient"), scored["path"])]


def write_outputs(report: dict, results: pd.DataFrame, scored: pd.DataFrame, out: Path,
                  name: str = "cohort", training_films: dict | None = None,
                  theirs: pd.DataFrame | None = None) -> list[Path]:
    """metrics.json, per-image predictions and the plots a reader looks at first (with the
    report's `film_shift` against the model's `training_films`, when known, and with the second
    model's scores, `theirs`, beside this one's when the report holds `against`)."""
    out.mkdir(parents=True, exist_ok=True)
    if theirs is not None:
        results = results.assign(against_probability=theirs.loc[results.index, "probability"])
    # Patient IDs never leave memory; the site's subgroup columns stay with the site's own list.
    results = results.drop(columns=[c for c in results.columns if c in IDENTIFIERS or c.startswith(SUBGROUP)])
    y, p = scored["y"].to_numpy(int), scored["probability"].to_numpy(float)
    t = report["metrics"]["threshold"]
    paths = [out / "metrics.json", out / "predictions.csv"]
    paths[0].write_text(json.dumps(report, indent=2, default=str))
    results.to_csv(paths[1], index=False)
    paths += [
        plots.confusion_matrix(evaluation.confusion(y, p, t), out / "confusion_matrix.png",
                               f"{name} at the model's threshold {t:.3f}"),
        plots.roc(y, p, t, out / "roc.png", report["metrics"]["auc"], cohort=name),
        plots.reliability({name: report["calibration"]}, out / "reliability.png"),
    ]
    if theirs is not None:
        paths.append(roc_against(report, scored, theirs, out / "roc_against.png", name))
    if any(report.get("by_subgroup", {}).values()):
        paths.append(plots.subgroups(report["by_subgroup"], out / "subgroups.png", name))
    if report.get("film_shift") and training_films:
        shift = pd.DataFrame(report["film_shift"])
        shift.to_csv(out / "film_shift.csv", index=False)
        paths += [out / "film_shift.csv",
                  plots.film_shift(shift, training_films, film_stats.columns(scored), y, out / "film_shift.png", name)]
    return paths


def roc_against(report: dict, scored: pd.DataFrame, theirs: pd.DataFrame, path: Path, name: str) -> Path:
    """Both models' ROC curves on the films both scored, each at its own threshold, titled with
    the paired AUC difference."""
    other = report["against"]
    films, p_other = both_scored(scored, theirs)
    y, p = films["y"].to_numpy(int), films["probability"].to_numpy(float)
    d = other["auc_difference"]
    return plots.roc_curves(y, [("this model", p, report["metrics"]["threshold"], evaluation.ranking_metrics(y, p)["auc"]),
                                (f"against {short_source(other['model'])}", p_other, other["metrics"]["threshold"],
                                 other["metrics"]["auc"])], path,
                            f"{name}: {other['films']} films both scored; AUC difference {d['difference']:+.4f}\n"
                            f"({d['low']:+.4f} to {d['high']:+.4f}, patients redrawn)")


def short_source(source: str) -> str:
    """A model's name for a legend: its end, where files of one name differ."""
    return source if len(source) <= 40 else "…" + source[-39:]


def subgroup_metrics(report: dict) -> dict[str, float]:
    """The per-subgroup figures as MLflow metrics (`cohort_by_<column>_<value>_<figure>`), with any
    character MLflow refuses in a name replaced, so runs can be compared per scanner in the UI."""
    from cxr_model.tracking import flat_metrics

    out = {}
    for column, groups in report.get("by_subgroup", {}).items():
        for value, figures in groups.items():  # names stay within MLflow's 250 characters
            out.update(flat_metrics(re.sub(r"[^\w./\- ]", "_", f"cohort_by_{column}_{value}")[:200], figures))
    return out


def log_run(cfg: Config, report: dict, paths: list[Path], info: dict) -> str:
    """One MLflow run per assessment (kind "assessment"), and a tag on the registered version
    assessed, so the registry shows how each version fared on each cohort."""
    from cxr_model import tracking

    run_id = tracking.usage_run(cfg, "assessment", f"assess-{info['cohort']}", info, {
        "cxr.cohort": info["cohort"], "cxr.cohort_path": info["path"], "cxr.cohort_fingerprint": info["fingerprint"]})
    with mlflow.start_run(run_id=run_id):
        tracking.log_metric_tree("cohort", report["metrics"])
        tracking.log_metric_tree("cohort_at_0_5", report["at_0_5"])
        tracking.log_metric_tree("cohort_ci95", report["ci95"])
        tracking.log_metric_tree("cohort_at_threshold_ci95", report.get("at_threshold_ci95", {}))
        shift = {f"cohort_shift_{row['group']}_{row['statistic']}_ks": row["ks"]
                 for row in report.get("film_shift", [])}
        mlflow.log_metrics({"cohort_images": report["count"], "cohort_refused": info["refused"],
                            **subgroup_metrics(report), **shift})
        if report.get("against"):
            other = report["against"]
            tracking.log_metric_tree("cohort_against", other["metrics"])
            tracking.log_metric_tree("cohort_auc_minus_against", other["auc_difference"])
            tracking.log_metric_tree("cohort_minus_against", other["rate_differences"])
            mlflow.set_tag("cxr.against", other["model"])
        tracking.log_files(paths, "assessment")
    if info.get("version"):
        m = report["metrics"]
        tracking.client(cfg).set_model_version_tag(
            cfg.mlflow.registered_model, str(info["version"]), f"assessment.{info['cohort']}",
            f"AUC {m['auc']:.3f}, sensitivity {m['sensitivity']:.3f}, specificity {m['specificity']:.3f} "
            f"on {report['count']} films ({info['fingerprint']}, run {run_id})")
    return run_id
