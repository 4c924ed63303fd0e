"""The pipeline steps: each reads declared files, writes declared files, and is called alike by
the Prefect tasks and by the `cxr <step>` commands that dvc.yaml runs."""

from __future__ import annotations

import functools
import json
import logging
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from cxr_model.config import Config
from cxr_model.errors import DataError, MissingInput, ValidationFailed

log = logging.getLogger("cxr.steps")
# The evaluate lines that quote the test split: an experiment judged blind silences this logger.
test_log = logging.getLogger("cxr.steps.test_figures")


def _write_json(path: Path, payload: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    tmp.replace(path)
    return path


def _require(path: Path) -> Path:
    """An earlier step's output; when it is missing, the error names the step to run first."""
    if not path.exists():
        raise MissingInput(f"{path} not found (run the {path.parent.name} step first)")
    return path


def _read_json(path: Path) -> dict:
    return json.loads(_require(path).read_text())


def _evidence(cfg: Config) -> list[Path]:
    """Small outputs worth attaching to a failed run."""
    lay = cfg.layout
    return [lay.ingest_summary, lay.duplicates, lay.validation_result, lay.profile_dir]


def step(name: str) -> Callable:
    """Time a step, log it, and record a FAILED MLflow run if it raises."""

    def wrap(fn: Callable[[Config], dict]) -> Callable[[Config], dict]:
        @functools.wraps(fn)
        def run(cfg: Config) -> dict:
            log.info("%s: started", name)
            start = time.perf_counter()
            try:
                result = fn(cfg)
            except Exception as exc:
                from cxr_model import tracking

                tracking.record_failure(cfg, name, exc, _evidence(cfg))
                raise
            seconds = time.perf_counter() - start
            log.info("%s: done in %.1f s", name, seconds)
            return {**result, "seconds": round(seconds, 2)}

        return run

    return wrap


def start_tracking(cfg: Config, kind: str) -> dict:
    """Close runs left open by killed processes, then open this execution's run."""
    from cxr_model import tracking

    swept = tracking.sweep_killed_runs(cfg)
    return {"run_id": tracking.open_run(cfg, kind), "killed_runs_closed": swept}


def retrain_decision(cfg: Config, fingerprint: str) -> tuple[bool, str]:
    """Whether the data with this fingerprint calls for training, and why: not when the champion
    was trained on it, nor when these settings already gave a rejected version on it."""
    from cxr_model import promotion, tracking

    client = tracking.client(cfg)
    name = cfg.mlflow.registered_model
    champion = promotion.current_champion(client, name)
    tags = {str(v.version): v.tags for v in client.search_model_versions(f"name='{name}'")}
    if champion is not None and tags.get(champion, {}).get("dataset_fingerprint") == fingerprint:
        return False, f"data unchanged since the champion (version {champion}) was trained"
    tried = (fingerprint, cfg.settings_fingerprint(), "rejected")
    for version, t in tags.items():
        if (t.get("dataset_fingerprint"), t.get("settings_fingerprint"), t.get("promotion.decision")) == tried:
            return False, (f"version {version} was trained on this data with these settings "
                           "and not promoted; change the data or params.yaml, or --force")
    return True, "no champion yet" if champion is None else "new data"


@step("import-data")
def import_data(cfg: Config) -> dict:
    """Bring the landing folder in as a DVC dataset version (a no-op when nothing changed)."""
    from cxr_model import versioning

    return versioning.import_landing(cfg)


@step("ingest")
def ingest(cfg: Config) -> dict:
    """Scan the dataset into the manifest, the duplicate report and a summary."""
    from cxr_model import data, versioning

    lay = cfg.layout
    source = cfg.data_source
    if cfg.data.versioned and not source.exists():
        raise DataError(f"versioned dataset {source} not found: run `cxr import-data` (or `make data`) "
                        f"to bring in the landing folder {cfg.landing}")
    manifest, duplicates = data.build_manifest(
        source, cfg.data.extensions, cfg.data.val_fraction, cfg.data.seed, cfg.data.max_image_pixels,
        index_path=lay.cache_dir / "ingest_index.csv",
    )
    lay.manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.to_csv(lay.manifest, index=False)
    duplicates.to_csv(lay.duplicates, index=False)
    summary = {**data.summarize(manifest), "source": str(source), "duplicates_dropped": len(duplicates),
               "dvc_version": versioning.dataset_version(cfg)}
    _write_json(lay.ingest_summary, summary)
    log.info("ingest: %s", json.dumps(summary["counts"]))
    return summary


def _readable_pixels(cfg: Config, manifest: pd.DataFrame) -> np.ndarray:
    """The decoded films of the manifest's readable rows, in order (decoded once, then cached)."""
    from cxr_model import preprocess

    readable = manifest[manifest["error"] == ""].reset_index(drop=True)
    return preprocess.decoded_pixels(
        readable, cfg.data_source, cfg.preprocess.image_size, cfg.data.max_image_pixels, cfg.layout.cache_dir
    )


@step("validate")
def validate(cfg: Config) -> dict:
    """Run the Great Expectations suite; raise ValidationFailed on any critical rule. Decodes the
    films once into the array cache that profile and train read."""
    from cxr_model import data, plots, validation

    lay = cfg.layout
    manifest = data.read_manifest(lay.manifest)
    pixels = _readable_pixels(cfg, manifest)
    near = validation.near_copies(manifest, pixels, cfg.validate.near_copy_correlation)
    summary = validation.validate_manifest(manifest, cfg.validate, lay.validation_dir, near)
    # The rule's evidence, to look at, whether it passed or not.
    pairs = validation.closest_pairs(manifest, near)
    pairs.to_csv(lay.closest_pairs, index=False)
    films = dict(zip(manifest.loc[manifest["error"] == "", "path"], pixels))
    plots.closest_pairs(pairs, films, cfg.validate.near_copy_correlation, lay.closest_pairs_png)
    if not summary["success"]:
        raise ValidationFailed(validation.failure_message(summary))
    log.info("validate: all critical rules passed (%d warning(s)); data docs: %s",
             summary["warnings"], summary["data_docs"])
    return {"success": True, "warnings": summary["warnings"]}


@step("profile")
def profile(cfg: Config) -> dict:
    """Counts, sizes, intensities, sample images and duplicate groups per split and class."""
    from cxr_model import data, profiling

    lay = cfg.layout
    manifest = data.read_manifest(lay.manifest)
    duplicates = pd.read_csv(lay.duplicates, keep_default_na=False)
    readable = manifest[manifest["error"] == ""].reset_index(drop=True)
    files = profiling.write_profile(readable, duplicates, _readable_pixels(cfg, manifest), lay.profile_dir,
                                    seed=cfg.data.seed)
    log.info("profile:\n%s", files["counts_md"].read_text())
    return {"files": [str(p) for p in files.values()]}


def _arrays(cfg: Config):
    from cxr_model import data, preprocess

    manifest = data.read_manifest(cfg.layout.manifest)
    return preprocess.load_arrays(
        manifest, cfg.data_source, cfg.preprocess.image_size, cfg.data.max_image_pixels, cfg.layout.cache_dir
    )


def _sample_files(cfg: Config, n: int) -> list[bytes]:
    """A few validation image files (the registered model's signature example)."""
    from cxr_model import data

    manifest = data.read_manifest(cfg.layout.manifest)
    paths = manifest.loc[manifest["split"] == "val", "path"].head(n)
    return [(cfg.data_source / p).read_bytes() for p in paths]


@step("train")
def train(cfg: Config) -> dict:
    """Fit the CNN; write the model, the per-epoch history and the training curves."""
    from cxr_model import plots, training

    lay = cfg.layout
    arrays = _arrays(cfg)
    result = training.fit(arrays["train"], arrays["val"], cfg, lay.checkpoint)
    tmp = lay.model.with_name("model.tmp.keras")
    result.model.save(tmp)
    tmp.replace(lay.model)
    result.history.to_csv(lay.history, index=False)
    plots.training_curves(result.history, lay.training_curves, result.member_best_epochs)
    summary = {
        "epochs_run": len(result.history), "best_epoch": result.best_epoch,
        "ensemble_members": cfg.model.ensemble, "member_best_epochs": list(result.member_best_epochs),
        "best_val_auc": result.best_val_auc, "train_seconds": round(result.seconds, 1),
        "train_images_per_second": round(result.images_per_second, 1),
        "train_images": len(arrays["train"]), "val_images": len(arrays["val"]),
    }
    _write_json(lay.train_summary, summary)
    return summary


@step("evaluate")
def evaluate(cfg: Config) -> dict:
    """Threshold from validation, then one scoring of the test split, with plots."""
    from cxr_model import data, evaluation, plots, probes, training
    from cxr_model.data import LABELS
    from cxr_model.model import keras

    lay = cfg.layout
    arrays = _arrays(cfg)
    model = keras.models.load_model(_require(lay.model), compile=False)
    val, test = arrays["val"], arrays["test"]
    p_val, p_test = training.predict(model, val.x), training.predict(model, test.x)
    types_val, types_test = (np.array([data.pneumonia_type(path) for path in a.paths]) for a in (val, test))
    patients_val, patients_test = (np.array([data.patient_id(path) for path in a.paths]) for a in (val, test))
    metrics = evaluation.evaluate_predictions(val.y, p_val, test.y, p_test, cfg.evaluate, types_val, types_test,
                                              patients_val, patients_test)
    # Validation only: shortcuts that would cost specificity on another site's films.
    def predict(x: np.ndarray) -> np.ndarray:
        return training.predict(model, x)

    metrics["val_probes"] = probes.run_probes(predict, val.x, val.y, p_val)
    metrics["val_aspect_jitter_auc"] = probes.aspect_jittered_auc(predict, val.x, val.y)
    _write_json(lay.metrics, metrics)
    t = metrics["threshold"]["threshold"]
    names = np.array(LABELS)
    pd.DataFrame({"path": test.paths, "label": names[test.y], "probability": p_test,
                  "predicted": names[(p_test >= t).astype(int)]}).to_csv(lay.predictions, index=False)
    out = lay.evaluate_dir
    plots.confusion_matrix(metrics["test"], out / "confusion_matrix.png",
                           f"test, threshold {t:.3f} ({metrics['threshold']['method']})")
    plots.confusion_matrix(metrics["test_at_0_5"], out / "confusion_matrix_at_0_5.png", "test, threshold 0.5")
    if len(set(test.y)) == 2:
        evaluation.roc_points(test.y, p_test).to_csv(lay.roc_points, index=False)
        plots.roc(test.y, p_test, t, out / "roc.png", metrics["test"]["auc"])
        plots.precision_recall(test.y, p_test, out / "precision_recall.png", metrics["test"]["average_precision"])
    plots.reliability(metrics["calibration"], out / "reliability.png")
    plots.hardest_cases(val.x, val.y, p_val, t, out / "validation_hardest.png")
    plots.probe_scores(metrics["val_probes"], {n: label for n, (label, _) in probes.PROBES.items()},
                       out / "validation_probes.png")
    m = metrics["test"]
    ci, ends = metrics["threshold"]["ci95"], metrics["test_at_threshold_ci95"]
    test_log.info("evaluate: threshold %.4f (%s); test AUC %.4f, accuracy %.4f, sensitivity %.4f, specificity %.4f",
                  t, metrics["threshold"]["method"], m["auc"], m["accuracy"], m["sensitivity"], m["specificity"])
    log.info("evaluate: validation AUC %.4f, and %.4f with the films' aspect scrambled (a squash cue would lower it)",
             metrics["val"]["auc"], metrics["val_aspect_jitter_auc"])
    test_log.info("evaluate: over validation resamples the threshold would land in %.3f-%.3f (95 %%); test accuracy "
                  "at those ends %.4f and %.4f", ci["low"], ci["high"], ends["low"]["accuracy"], ends["high"]["accuracy"])
    return {"threshold": t, "threshold_ci95": ci, "test": m, "test_at_threshold_ci95": ends}


@step("register")
def register(cfg: Config) -> dict:
    """One MLflow run with params, per-epoch metrics, test metrics, plots and the model version."""
    import mlflow

    from cxr_model import model_card, registry, tracking
    from cxr_model.model import keras
    from cxr_model.prediction import Predictor

    lay = cfg.layout
    ingest_summary = _read_json(lay.ingest_summary)
    train_summary = _read_json(lay.train_summary)
    metrics = _read_json(lay.metrics)
    history = pd.read_csv(lay.history)
    fingerprint = ingest_summary["fingerprint"]
    threshold = float(metrics["threshold"]["threshold"])
    experiment_id = tracking.connect(cfg)
    run_id = tracking.active_run_id(cfg)  # opened by a flow; a DVC stage opens its own
    tags = {"dataset_fingerprint": fingerprint, "settings_fingerprint": cfg.settings_fingerprint(),
            "dataset_dvc_md5": ingest_summary["dvc_version"],
            "git_commit": tracking.git_commit(cfg.root), "image_size": str(cfg.preprocess.image_size)}
    with mlflow.start_run(run_id=run_id, experiment_id=None if run_id else experiment_id,
                          run_name=None if run_id else f"train-{tracking.stamp()}") as run:
        mlflow.set_tags({**{f"cxr.{k}": v for k, v in tags.items()}, "cxr.status": "completed",
                         "cxr.data_source": ingest_summary["source"],
                         "cxr.threshold_method": metrics["threshold"]["method"]})
        mlflow.log_params(cfg.flat_params())
        if "train_loss" not in run.data.metrics:  # a sweep trial's run already holds its curves
            tracking.log_history(history)
        tracking.log_metric_tree("", {"test": metrics["test"], "test_at_0_5": metrics["test_at_0_5"],
                                      "threshold_ci95": metrics["threshold"].get("ci95", {}),
                                      "val_final": metrics["val"], "val_probes": metrics.get("val_probes", {}),
                                      "val_aspect_jitter_auc": metrics.get("val_aspect_jitter_auc"),
                                      "calibration": {split: {k: cal[k] for k in ("brier", "ece")}
                                                      for split, cal in metrics.get("calibration", {}).items()},
                                      "by_type": metrics.get("by_type", {}),
                                      "fit": train_summary})
        mlflow.log_dict(ingest_summary, "data/manifest_summary.json")
        tracking.log_files([lay.manifest, lay.duplicates], "data")
        tracking.log_files([lay.validation_result, lay.closest_pairs, lay.closest_pairs_png,
                            lay.validation_dir / "gx" / "uncommitted" / "data_docs"], "validation")
        tracking.log_files([lay.profile_dir], "")
        tracking.log_files([lay.history, lay.training_curves, lay.train_summary], "training")
        tracking.log_files([lay.metrics, lay.predictions, *sorted(lay.evaluate_dir.glob("*.png"))], "evaluation")
        model = keras.models.load_model(lay.model, compile=False)
        predictor = Predictor(model, threshold, cfg.preprocess.image_size, cfg.data.max_image_pixels, cfg.predict)
        model_info = {"architecture": cfg.model.arch, "parameters": int(model.count_params()),
                      "input": f"grayscale {cfg.preprocess.image_size}x{cfg.preprocess.image_size}, 0-255"}
        card = model_card.build_card(cfg.mlflow.registered_model, ingest_summary, train_summary, metrics,
                                     model_info, tags["git_commit"], run.info.run_id)
        model_uri, version = registry.log_and_register(
            lay.model, predictor, _sample_files(cfg, 2), card, lay.register_dir / "model",
            cfg.mlflow.registered_model, {**tags, "run_id": run.info.run_id},
        )
        card["version"] = version
        lay.model_card.write_text(model_card.render_markdown(card))
        _write_json(lay.model_card_json, card)
        tracking.log_files([lay.model_card, lay.model_card_json], "model_card")
        registration = {"run_id": run.info.run_id, "experiment_id": experiment_id, "model_uri": model_uri,
                        "registered_model": cfg.mlflow.registered_model, "version": version,
                        "threshold": threshold, "dataset_fingerprint": fingerprint,
                        "tracking_uri": cfg.tracking_uri}
    lay.active_run.unlink(missing_ok=True)
    _write_json(lay.registration, registration)
    return registration


@step("promote")
def promote(cfg: Config) -> dict:
    """Move the champion alias to the new version if it passes the gates and the comparison."""
    from cxr_model import data, evaluation, preprocess, probes, promotion, serving, tracking

    lay = cfg.layout
    reg = _read_json(lay.registration)
    metrics = _read_json(lay.metrics)
    name, version = reg["registered_model"], str(reg["version"])
    client = tracking.client(cfg)
    champion_version = promotion.current_champion(client, name)
    champion = None
    if champion_version is not None and champion_version != version:
        tags = client.get_model_version(name, champion_version).tags
        size = int(tags.get("image_size", cfg.preprocess.image_size))
        manifest = data.read_manifest(lay.manifest)
        test = manifest[manifest["split"] == "test"].reset_index(drop=True)
        x = preprocess.decoded_pixels(test, cfg.data_source, size, cfg.data.max_image_pixels, lay.cache_dir)
        p = serving.load_predictor(f"models:/{name}/{champion_version}").probabilities(x)
        y = (test["label"] == data.LABELS[1]).to_numpy(dtype=int)
        champion = {"version": champion_version, "eval_auc": evaluation.ranking_metrics(y, p)["auc"]}
        scored = pd.read_csv(lay.predictions).set_index("path")["probability"]
        if set(scored.index) == set(test["path"]):  # the candidate's scores of the same films
            patients = np.array([data.patient_id(path) for path in test["path"]])
            champion["difference_ci95"] = evaluation.paired_auc_difference(
                y, scored.loc[test["path"]].to_numpy(float), p, patients)
    candidate = {"val_auc": metrics["val"]["auc"], "val_sensitivity": metrics["val"]["sensitivity"],
                 "eval_auc": metrics["test"]["auc"], "val_aspect_jitter_auc": metrics.get("val_aspect_jitter_auc"),
                 "probe_ratios": probes.normal_ratios(metrics.get("val_probes", {}))}
    decision = promotion.decide(candidate, champion, cfg.promote)
    if champion_version == version:
        decision = promotion.Decision(True, ["already the champion"])
    else:
        promotion.apply(client, name, version, decision)
    client.set_tag(reg["run_id"], "cxr.promotion", decision.sentence()[:5000])
    result = {"version": version, "promoted": decision.promote, "reasons": decision.reasons,
              "previous_champion": champion_version, "comparison": champion,
              "champion": promotion.current_champion(client, name)}
    _write_json(lay.promotion, result)
    print(f"{name} version {version} {decision.sentence()}")
    return result


STEPS: dict[str, Callable[[Config], dict]] = {
    "import-data": import_data, "ingest": ingest, "validate": validate, "profile": profile,
    "train": train, "evaluate": evaluate, "register": register, "promote": promote,
}
