"""One Prefect task per pipeline step; each loads params.yaml and calls the library step."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from cxr_model import steps, sweep
from cxr_model.config import Config, load_config, with_overrides


def _config(params: str, overrides: dict | None = None) -> Config:
    cfg = load_config(params)
    return with_overrides(cfg, overrides) if overrides else cfg


def _run(name: str, params: str, overrides: dict | None = None) -> dict:
    return steps.STEPS[name](_config(params, overrides))


@task(name="import-data", cache_policy=NONE)
def import_data(params: str) -> dict:
    """Landing folder -> DVC dataset version (new only when images changed)."""
    return _run("import-data", params)


@task(name="ingest", cache_policy=NONE)
def ingest(params: str) -> dict:
    """Manifest of every image, duplicates handled, patient-grouped validation split."""
    return _run("ingest", params)


@task(name="validate", cache_policy=NONE)
def validate(params: str) -> dict:
    """Great Expectations gate; a critical failure fails the flow before training."""
    return _run("validate", params)


@task(name="profile", cache_policy=NONE)
def profile(params: str) -> dict:
    """Class-distribution tables and charts per split."""
    return _run("profile", params)


@task(name="train", cache_policy=NONE)
def train(params: str, overrides: dict | None = None) -> dict:
    """Augmented CNN training with early stopping on validation AUC."""
    return _run("train", params, overrides)


@task(name="evaluate", cache_policy=NONE)
def evaluate(params: str, overrides: dict | None = None) -> dict:
    """Validation-chosen threshold, then the held-out test split."""
    return _run("evaluate", params, overrides)


@task(name="register", cache_policy=NONE)
def register(params: str, overrides: dict | None = None) -> dict:
    """MLflow run and a new registered model version."""
    return _run("register", params, overrides)


@task(name="promote", cache_policy=NONE)
def promote(params: str, overrides: dict | None = None) -> dict:
    """Champion alias moves only for a version that passes the gates and the comparison."""
    return _run("promote", params, overrides)


@task(name="start-tracking", cache_policy=NONE)
def start_tracking(params: str, kind: str) -> dict:
    """Open this execution's MLflow run (closing runs of killed executions first)."""
    return steps.start_tracking(load_config(params), kind)


@task(name="retrain-decision", cache_policy=NONE)
def retrain_decision(params: str, fingerprint: str) -> tuple[bool, str]:
    """Train or not on this data, and why (champion's data, earlier rejected versions)."""
    return steps.retrain_decision(load_config(params), fingerprint)


@task(name="sweep-plan", cache_policy=NONE)
def sweep_plan(params: str) -> dict:
    """Expand the search space and open the sweep's parent MLflow run."""
    cfg = load_config(params)
    settings = sweep.expand_space(cfg)
    return {**sweep.open_sweep(cfg, settings), "settings": settings}


@task(name="sweep-trial", cache_policy=NONE)
def sweep_trial(params: str, plan: dict, index: int, overrides: dict) -> dict:
    """Train one trial (on a Dask worker) as a run nested under the sweep."""
    return sweep.run_trial(load_config(params), plan, index, overrides)


@task(name="sweep-choose", cache_policy=NONE)
def sweep_choose(params: str, plan: dict, outcomes: list[dict]) -> dict:
    """Best trial by validation AUC; table and plot on the sweep's run."""
    return sweep.finish_sweep(load_config(params), plan, outcomes)
