"""MLflow: one run per pipeline execution, logged from the files the steps wrote."""

from __future__ import annotations

import logging
import subprocess
import traceback
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from cxr_model.config import Config

log = logging.getLogger("cxr.tracking")


def connect(cfg: Config) -> str:
    """Point MLflow at the configured store and return the experiment id (created if missing)."""
    mlflow.set_tracking_uri(cfg.tracking_uri)
    mlflow.set_registry_uri(cfg.tracking_uri)
    experiment = mlflow.get_experiment_by_name(cfg.mlflow.experiment)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if cfg.tracking_uri.startswith("sqlite:"):
        cfg.artifact_root.mkdir(parents=True, exist_ok=True)
        location = cfg.artifact_root.as_uri()
    return mlflow.create_experiment(cfg.mlflow.experiment, artifact_location=location)


def git_commit(root: Path) -> str:
    """Commit of the code that ran, or 'unknown' outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def log_metric_tree(prefix: str, values: dict, step: int | None = None) -> None:
    """Log every number of a nested dict as prefix_key metrics."""
    flat = {}
    for key, value in values.items():
        name = f"{prefix}_{key}" if prefix else key
        if isinstance(value, dict):
            log_metric_tree(name, value, step)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
    if flat:
        mlflow.log_metrics(flat, step=step)


def history_metric_name(column: str) -> str:
    """Keras history column -> MLflow metric: loss -> train_loss, seconds -> epoch_seconds."""
    if column.startswith("val_") or column == "learning_rate":
        return column
    if column == "seconds":
        return "epoch_seconds"
    return f"train_{column}"


def log_history(history) -> None:
    """Per-epoch curves, one MLflow step per epoch."""
    for row in history.to_dict("records"):
        epoch = int(row.pop("epoch"))
        mlflow.log_metrics({history_metric_name(k): float(v) for k, v in row.items()}, step=epoch)


def log_files(paths: list[Path], artifact_path: str) -> None:
    """Log files and folders that exist; silently skip the missing ones."""
    for path in paths:
        if path.is_dir():
            mlflow.log_artifacts(str(path), artifact_path=f"{artifact_path}/{path.name}".strip("/"))
        elif path.is_file():
            mlflow.log_artifact(str(path), artifact_path=artifact_path or None)


def record_failure(cfg: Config, step: str, error: BaseException, evidence: list[Path]) -> str | None:
    """A FAILED run saying which step broke and why, with what the steps had written so far."""
    try:
        experiment_id = connect(cfg)
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"failed-{step}") as run:
            mlflow.set_tags({"cxr.status": "failed", "cxr.failed_step": step,
                             "cxr.error": str(error)[:5000], "cxr.git_commit": git_commit(cfg.root)})
            mlflow.log_params(cfg.flat_params())
            mlflow.log_text("".join(traceback.format_exception(error)), "error.txt")
            log_files(evidence, "evidence")
            mlflow.end_run(status="FAILED")
            log.info("tracking: recorded failed run %s", run.info.run_id)
            return run.info.run_id
    except Exception as exc:  # never hide the original error behind a tracking problem
        log.warning("tracking: could not record the failure in MLflow: %s", exc)
        return None


def version_tags(client: MlflowClient, name: str, version: str, tags: dict[str, str]) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
