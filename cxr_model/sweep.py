"""Hyperparameter sweeps: expand the search space, train one trial per setting (each an MLflow
run nested under the sweep's run), and pick the best trial by validation AUC only."""

from __future__ import annotations

import itertools
import json
import logging
import random

import pandas as pd

from cxr_model.config import Config, with_overrides
from cxr_model.errors import ConfigError, CxrError

log = logging.getLogger("cxr.sweep")

SHARED = ("ingest", "cache")  # a trial reads the sweep's manifest and decoded arrays


def expand_space(cfg: Config) -> list[dict]:
    """Settings to try: every grid combination (capped by trials) or `trials` random draws."""
    space, sweep = cfg.sweep.space, cfg.sweep
    if not space:
        raise ConfigError("sweep.space is empty: list at least one key with values to try")
    for key, values in space.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"sweep.space.{key} must be a non-empty list of values")
    keys = list(space)
    grid = [dict(zip(keys, combo)) for combo in itertools.product(*(space[k] for k in keys))]
    if sweep.method == "random":
        if sweep.trials < 1:
            raise ConfigError("sweep.method random needs sweep.trials >= 1")
        rng = random.Random(sweep.seed)
        settings = rng.sample(grid, sweep.trials) if sweep.trials <= len(grid) else \
            [rng.choice(grid) for _ in range(sweep.trials)]
    else:
        settings = grid[: sweep.trials] if sweep.trials else grid
    for overrides in settings:
        with_overrides(cfg, overrides)  # a typo or a bad value stops the sweep before any training
    return settings


def trial_overrides(cfg: Config, sweep_id: str, index: int, overrides: dict) -> dict:
    """A trial's overrides plus its own artifacts folder (what tasks need to load its settings)."""
    return {**overrides, "artifacts_dir": str(cfg.layout.sweep_dir(sweep_id) / f"trial-{index}")}


def trial_config(cfg: Config, sweep_id: str, index: int, overrides: dict) -> Config:
    """The trial's settings, with its artifacts folder prepared to share the sweep's data."""
    trial = with_overrides(cfg, trial_overrides(cfg, sweep_id, index, overrides))
    folder = trial.artifacts
    folder.mkdir(parents=True, exist_ok=True)
    for name in SHARED:
        link = folder / name
        if not link.exists():
            (cfg.artifacts / name).mkdir(parents=True, exist_ok=True)
            link.symlink_to(cfg.artifacts / name, target_is_directory=True)
    return trial


def label(overrides: dict) -> str:
    """Short human name of a trial's setting, e.g. 'learning_rate=0.001 dropout=0.3'."""
    return " ".join(f"{k.split('.')[-1]}={v}" for k, v in overrides.items())


def open_sweep(cfg: Config, settings: list[dict]) -> dict:
    """The sweep's parent MLflow run, named and tagged so the UI groups its trials under it."""
    from cxr_model import tracking

    experiment_id = tracking.connect(cfg)
    client = tracking.client(cfg)
    sweep_id = tracking.create_run(cfg, experiment_id, f"sweep-{tracking.stamp()}", {
        "cxr.kind": "sweep", "cxr.status": "running", "cxr.sweep.method": cfg.sweep.method,
        "cxr.sweep.trials": str(len(settings))})
    client.log_text(sweep_id, json.dumps({"space": cfg.sweep.space, "trials": settings}, indent=2, default=str),
                    "sweep/space.json")
    for key, value in cfg.flat_params().items():
        if not key.startswith("sweep."):
            client.log_param(sweep_id, key, value)
    return {"sweep_id": sweep_id, "experiment_id": experiment_id}


def run_trial(cfg: Config, sweep: dict, index: int, overrides: dict) -> dict:
    """Train one trial in its own nested run; a failure is recorded and returned, not raised."""
    import mlflow

    from cxr_model import steps, tracking

    trial = trial_config(cfg, sweep["sweep_id"], index, overrides)
    client = tracking.client(trial)
    run_id = tracking.create_run(trial, sweep["experiment_id"], f"trial-{index} {label(overrides)}", {
        "mlflow.parentRunId": sweep["sweep_id"], "cxr.kind": "sweep-trial", "cxr.status": "running",
        "cxr.sweep.trial": str(index)})
    tracking.set_active_run(trial, run_id)  # a failing step records into it
    outcome = {"trial": index, "overrides": overrides, "run_id": run_id}
    log.info("sweep: trial %d (%s) started", index, label(overrides))
    try:
        summary = steps.train(trial)
    except Exception as exc:  # one bad trial must not sink the sweep
        log.warning("sweep: trial %d failed: %s", index, exc)
        return {**outcome, "error": str(exc)[:2000]}
    with mlflow.start_run(run_id=run_id):
        mlflow.log_params(trial.flat_params())
        tracking.log_history(pd.read_csv(trial.layout.history))
        tracking.log_metric_tree("fit", summary)
        tracking.log_files([trial.layout.training_curves, trial.layout.train_summary], "training")
        mlflow.set_tag("cxr.status", "trained")
    client.set_terminated(run_id, "FINISHED")
    log.info("sweep: trial %d done: best validation AUC %.4f", index, summary["best_val_auc"])
    return {**outcome, "best_val_auc": summary["best_val_auc"], "best_epoch": summary["best_epoch"],
            "train_seconds": summary["train_seconds"]}


def results_table(outcomes: list[dict]) -> pd.DataFrame:
    """One row per trial; `best` marks the highest validation AUC (ties: the earlier trial)."""
    rows = [{"trial": o["trial"], "label": label(o["overrides"]), "run_id": o["run_id"],
             "best_val_auc": o.get("best_val_auc"), "best_epoch": o.get("best_epoch"),
             "train_seconds": o.get("train_seconds"), "error": o.get("error", "")} for o in outcomes]
    table = pd.DataFrame(rows).sort_values("trial").reset_index(drop=True)
    table["best_val_auc"] = pd.to_numeric(table["best_val_auc"])
    table["best"] = False
    if table["best_val_auc"].notna().any():
        table.loc[table["best_val_auc"].idxmax(), "best"] = True
    return table


def finish_sweep(cfg: Config, sweep: dict, outcomes: list[dict]) -> dict:
    """Record the table, plot and choice on the parent run; reopen the best trial for registration."""
    from cxr_model import plots, tracking

    table = results_table(outcomes)
    folder = cfg.layout.sweep_dir(sweep["sweep_id"])
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / "trials.csv", index=False)
    (folder / "trials.md").write_text(table.drop(columns=["run_id"]).to_markdown(index=False, floatfmt=".4f"))
    plots.sweep_trials(table, folder / "trials.png")
    client = tracking.client(cfg)
    sweep_id = sweep["sweep_id"]
    for name in ("trials.csv", "trials.md", "trials.png"):
        client.log_artifact(sweep_id, str(folder / name), "sweep")
    if not table["best"].any():
        client.set_tag(sweep_id, "cxr.status", "failed")
        client.set_terminated(sweep_id, "FAILED")
        raise CxrError(f"every sweep trial failed; first error: {table['error'].iloc[0]}")
    best = table[table["best"]].iloc[0]
    chosen = next(o for o in outcomes if o["trial"] == best["trial"])
    client.log_metric(sweep_id, "best_val_auc", float(best["best_val_auc"]))
    for key, value in chosen["overrides"].items():
        client.log_param(sweep_id, f"best.{key}", value)
    client.set_tag(sweep_id, "cxr.sweep.best_run_id", chosen["run_id"])
    client.set_tag(sweep_id, "cxr.status", "completed")
    client.set_terminated(sweep_id, "FINISHED")
    log.info("sweep: chose trial %d (%s), validation AUC %.4f\n%s", best["trial"], best["label"],
             best["best_val_auc"], (folder / "trials.md").read_text())
    result = {"best_trial": int(best["trial"]), "best_val_auc": float(best["best_val_auc"]),
              "best_overrides": chosen["overrides"], "best_run_id": chosen["run_id"],
              "table": str(folder / "trials.md"), "failed_trials": int(table["error"].ne("").sum())}
    if cfg.sweep.register_best:
        # The best trial's run becomes its folder's active run: evaluate/register log into it.
        overrides = trial_overrides(cfg, sweep_id, result["best_trial"], chosen["overrides"])
        client.update_run(chosen["run_id"], status="RUNNING")
        tracking.set_active_run(with_overrides(cfg, overrides), chosen["run_id"])
        result["register_overrides"] = overrides
    return result
