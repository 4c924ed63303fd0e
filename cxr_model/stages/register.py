"""The register stage: one MLflow run and a new version of the registered model."""

from __future__ import annotations

import pandas as pd

from cxr_model.config import Config
from cxr_model.stages.common import read_json, step, write_json


def sample_files(cfg: Config, n: int) -> list[bytes]:
    """A few validation image files (the registered model's signature example)."""
    from cxr_model import data

    manifest = data.read_manifest(cfg.layout.manifest)
    paths = manifest.loc[manifest["split"] == "val", "path"].head(n)
    return [(cfg.data_source / p).read_bytes() for p in paths]


@step("register")
def register(cfg: Config) -> dict:
    """One MLflow run with params, per-epoch metrics, test metrics, plots and the model version."""
    import mlflow

    from cxr_model import film_stats, model_card, registry, tracking
    from cxr_model.model import keras
    from cxr_model.prediction import Predictor, borderline_band

    lay = cfg.layout
    ingest_summary = read_json(lay.ingest_summary)
    train_summary = read_json(lay.train_summary)
    metrics = read_json(lay.metrics)
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
                         "cxr.data_source": str(cfg.data_source),
                         "cxr.threshold_method": metrics["threshold"]["method"],
                         "cxr.test_ci95_resampled": metrics.get("test_ci95_resampled", "films")})
        mlflow.log_params(cfg.flat_params())
        if "train_loss" not in run.data.metrics:  # a sweep trial's run already holds its curves
            tracking.log_history(history)
        tracking.log_metric_tree("", {"test": metrics["test"], "test_at_0_5": metrics["test_at_0_5"],
                                      "threshold_ci95": metrics["threshold"].get("ci95", {}),
                                      "test_ci95": metrics.get("test_ci95", {}),
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
        if lay.split_shift.is_file():  # how far validation and test films sit from training's, run to run
            shift = pd.read_csv(lay.split_shift)
            tracking.log_metric_tree("split_shift", {f"{r.split}_{r.group}_{r.statistic}_ks": r.ks
                                                     for r in shift.itertuples()})
        tracking.log_files([lay.history, lay.training_curves, lay.train_summary], "training")
        tracking.log_files([lay.metrics, lay.predictions, *sorted(lay.evaluate_dir.glob("*.png"))], "evaluation")
        model = keras.models.load_model(lay.model, compile=False)
        predictor = Predictor(model, threshold, cfg.preprocess.image_size, cfg.data.max_image_pixels, cfg.predict,
                              band=borderline_band(metrics["threshold"].get("ci95")))
        model_info = {"architecture": cfg.model.arch, "parameters": int(model.count_params()),
                      "input": f"grayscale {cfg.preprocess.image_size}x{cfg.preprocess.image_size}, 0-255"}
        card = model_card.build_card(cfg.mlflow.registered_model, ingest_summary, train_summary, metrics,
                                     model_info, tags["git_commit"], run.info.run_id)
        # What `cxr assess` compares a cohort's films with (film_stats); absent without a profile.
        if lay.film_stats.is_file():
            card["training_films"] = film_stats.training_reference(pd.read_csv(lay.film_stats))
        model_uri, version = registry.log_and_register(
            lay.model, predictor, sample_files(cfg, 2), card, lay.register_dir / "model",
            cfg.mlflow.registered_model, {**tags, "run_id": run.info.run_id},
        )
        card["version"] = version
        lay.model_card.write_text(model_card.render_markdown(card))
        write_json(lay.model_card_json, card)
        tracking.log_files([lay.model_card, lay.model_card_json], "model_card")
        registration = {"run_id": run.info.run_id, "experiment_id": experiment_id, "model_uri": model_uri,
                        "registered_model": cfg.mlflow.registered_model, "version": version,
                        "threshold": threshold, "dataset_fingerprint": fingerprint,
                        "tracking_uri": cfg.tracking_uri}
    lay.active_run.unlink(missing_ok=True)
    write_json(lay.registration, registration)
    return registration
