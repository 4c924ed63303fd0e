"""MLflow: one run per pipeline execution, logged from the files the steps wrote."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.tracking.context.registry import resolve_tags

from cxr_model.config import Config
from cxr_model.errors import CxrError
from cxr_model.processes import pid_alive, unanswered

log = logging.getLogger("cxr.tracking")
# A progress bar per small artifact read back (the registered model's input example, a version's
# manifest) only clutters the flow's log; a user's own setting wins.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


_ANSWERED: set[str] = set()  # servers seen to answer in this process (a failure is checked again)


def check_server(uri: str, seconds: float = 5.0) -> None:
    """Fail within seconds, in one sentence, when a tracking server does not answer: MLflow's own
    client retries for minutes first."""
    if not uri.startswith(("http://", "https://")) or uri in _ANSWERED:
        return
    reason = unanswered(uri.rstrip("/") + "/health", seconds)
    if reason is not None:
        raise CxrError(f"the MLflow tracking server at {uri} does not answer ({reason}): start it "
                       "(`make team-up`), or point MLFLOW_TRACKING_URI (or mlflow.tracking_uri) at one that runs")
    _ANSWERED.add(uri)


def connect(cfg: Config) -> str:
    """Point MLflow at the configured store and return the experiment id (created if missing)."""
    check_server(cfg.tracking_uri)
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


def client(cfg: Config) -> MlflowClient:
    """A client bound to this project's store for both tracking and registry."""
    check_server(cfg.tracking_uri)
    mlflow.set_tracking_uri(cfg.tracking_uri)
    mlflow.set_registry_uri(cfg.tracking_uri)
    return MlflowClient(tracking_uri=cfg.tracking_uri, registry_uri=cfg.tracking_uri)


def git_commit(root: Path) -> str:
    """Commit of the code that ran, or 'unknown' outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def flat_metrics(prefix: str, values: dict) -> dict[str, float]:
    """Every number of a nested dict as prefix_key_subkey: float (MLflow metrics are flat)."""
    flat = {}
    for key, value in values.items():
        name = f"{prefix}_{key}" if prefix else key
        if isinstance(value, dict):
            flat.update(flat_metrics(name, value))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


def log_metric_tree(prefix: str, values: dict, step: int | None = None) -> None:
    """Log every number of a nested dict as prefix_key metrics, in the active run."""
    flat = flat_metrics(prefix, values)
    if flat:
        mlflow.log_metrics(flat, step=step)


def log_metrics_to(cfg: Config, run_id: str, prefix: str, values: dict) -> None:
    """The same into a run by id, leaving its status alone (a finished run stays finished)."""
    from mlflow.entities import Metric

    stamp_ms = int(time.time() * 1000)
    metrics = [Metric(name, value, stamp_ms, 0) for name, value in flat_metrics(prefix, values).items()]
    if metrics:
        client(cfg).log_batch(run_id, metrics=metrics)


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


def _active_file(cfg: Config) -> Path:
    return cfg.layout.active_run


def active_run_id(cfg: Config) -> str | None:
    """The run a flow opened for this pipeline execution, if one is still open."""
    path = _active_file(cfg)
    if not path.is_file():
        return None
    run_id = json.loads(path.read_text()).get("run_id")
    try:
        run = client(cfg).get_run(run_id)
    except Exception:
        return None
    return run_id if run.info.status == "RUNNING" else None


def create_run(cfg: Config, experiment_id: str, name: str, tags: dict[str, str]) -> str:
    """A run carrying who and where started it (mlflow.user, cxr.host): on a shared server,
    engineers' runs sit side by side and stay attributable."""
    defaults = {"cxr.pid": str(os.getpid()), "cxr.host": socket.gethostname(), "cxr.git_commit": git_commit(cfg.root)}
    return client(cfg).create_run(experiment_id, run_name=name,
                                  tags=resolve_tags({**defaults, **tags})).info.run_id


def open_run(cfg: Config, kind: str) -> str:
    """Open the execution's run before any step, so a crash or kill is visible in MLflow."""
    experiment_id = connect(cfg)
    run_id = create_run(cfg, experiment_id, f"{kind}-{stamp()}", {"cxr.status": "running"})
    set_active_run(cfg, run_id)
    return run_id


def set_active_run(cfg: Config, run_id: str) -> None:
    """The run this artifacts folder's steps log into (and a failing step records into)."""
    path = _active_file(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"run_id": run_id}))


def close_run(cfg: Config, status: str = "FINISHED", tags: dict[str, str] | None = None) -> None:
    """End the execution's run (if still open) and forget it."""
    run_id = active_run_id(cfg)
    if run_id:
        c = client(cfg)
        for key, value in (tags or {}).items():
            c.set_tag(run_id, key, value)
        c.set_terminated(run_id, status=status)
    _active_file(cfg).unlink(missing_ok=True)


def sweep_killed_runs(cfg: Config) -> list[str]:
    """Mark runs whose process died without ending them (SIGKILL, power loss) as KILLED."""
    c = client(cfg)
    experiment = c.get_experiment_by_name(cfg.mlflow.experiment)
    if experiment is None:
        return []
    swept = []
    host = socket.gethostname()
    for run in c.search_runs([experiment.experiment_id], "tags.`cxr.status` = 'running'"):
        tags = run.data.tags
        if run.info.status != "RUNNING" or tags.get("cxr.host") != host:
            continue
        if not pid_alive(int(tags.get("cxr.pid", "0") or 0)):
            c.set_tag(run.info.run_id, "cxr.status", "killed")
            c.set_tag(run.info.run_id, "cxr.error", "the process running this pipeline died before it ended")
            c.set_terminated(run.info.run_id, status="KILLED")
            swept.append(run.info.run_id)
            log.warning("tracking: run %s was left open by a killed process; marked KILLED", run.info.run_id)
    return swept


def usage_run(cfg: Config, kind: str, name: str, info: dict, tags: dict[str, str]) -> str:
    """A run recording one use of a model (an assessment, a scored batch; `cxr.kind`), tagged with
    the model it used (`info`: source, version), so the runs of a version can be found."""
    tags = {"cxr.kind": kind, "cxr.model_source": info["source"], **tags}
    if info.get("version"):
        tags["cxr.model_version"] = str(info["version"])
    return create_run(cfg, connect(cfg), f"{name}-{stamp()}", tags)


def stamp() -> str:
    """UTC time for run names."""
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")


def record_failure(cfg: Config, step: str, error: BaseException, evidence: list[Path]) -> str | None:
    """A FAILED run saying which step broke and why, with what the steps had written so far."""
    try:
        experiment_id = connect(cfg)
        run_id = active_run_id(cfg)
        with mlflow.start_run(run_id=run_id, experiment_id=None if run_id else experiment_id,
                              run_name=None if run_id else f"failed-{step}") as run:
            mlflow.set_tags({"cxr.status": "failed", "cxr.failed_step": step,
                             "cxr.error": str(error)[:5000], "cxr.git_commit": git_commit(cfg.root)})
            mlflow.log_params(cfg.flat_params())
            mlflow.log_text("".join(traceback.format_exception(error)), "error.txt")
            log_files(evidence, "evidence")
            mlflow.end_run(status="FAILED")
        _active_file(cfg).unlink(missing_ok=True)
        log.info("tracking: recorded failed run %s", run.info.run_id)
        return run.info.run_id
    except Exception as exc:  # never hide the original error behind a tracking problem
        log.warning("tracking: could not record the failure in MLflow: %s", exc)
        return None
