"""Register the retrain flow as a deployment on the team's work pool: the Prefect server schedules
it (retrain.cron) or a person triggers it, and whichever worker polls the pool runs it."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.settings import PREFECT_API_URL, temporary_settings

from cxr_model.config import Config, default_params_path, load_config
from cxr_model.stack import Stack
from flows.retrain import retrain_flow

ROOT = Path(__file__).resolve().parents[1]
DEPLOYMENT = "retrain"


def deploy(params: str, source: str | None = None, schedule: bool = True) -> str:
    """Create or update cxr-retrain/retrain on a real Prefect server; returns the deployment id."""
    cfg = load_config(params)
    # PREFECT_API_URL names the team's server; without it, the one `cxr stack up` started here
    # (set through Prefect's settings: it read the environment when it was imported).
    api = os.environ.get("PREFECT_API_URL") or Stack(cfg).prefect_api
    with temporary_settings(updates={PREFECT_API_URL: api}):
        return _apply(cfg, params, source, schedule)


def _apply(cfg: Config, params: str, source: str | None, schedule: bool) -> str:
    # Workers run the flow from the project checkout: this folder (same path on every worker
    # machine) or a git URL they clone. The params path is relative to that checkout.
    source = source or str(ROOT)
    relative = os.path.relpath(Path(params).resolve(), ROOT) if not source.startswith(("http", "git@")) else params
    env = {k: os.environ[k] for k in ("MLFLOW_TRACKING_URI", "CXR_DATA") if os.environ.get(k)}
    flow = retrain_flow.from_source(source=source, entrypoint="flows/retrain.py:retrain_flow")
    # The server holds further runs (a manual trigger during the nightly one, or a second worker
    # machine) queued until a slot frees; the checkout's file lock only guards one machine.
    limit = ConcurrencyLimitConfig(limit=cfg.retrain.max_concurrent_runs,
                                   collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)
    # to_deployment + apply: registers the deployment only (flow.deploy() also checks for online
    # workers, which the 3.8 server rejected with fastapi >= 0.151; see constraints.txt).
    deployment = flow.to_deployment(
        name=DEPLOYMENT, work_pool_name=cfg.team.work_pool, parameters={"params": relative, "force": False},
        cron=cfg.retrain.cron if schedule else None, job_variables={"env": env} if env else None,
        concurrency_limit=limit,
        description="Retrain on new data; promote only a version that earns it.",
    )
    return str(deployment.apply())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Register the cxr retrain deployment on the team work pool.")
    parser.add_argument("--params", default=None, help="parameters file (default: $CXR_PARAMS or ./params.yaml)")
    parser.add_argument("--source", help="git URL workers clone (default: this checkout, same path on workers)")
    parser.add_argument("--no-schedule", action="store_true", help="manual runs only (no retrain.cron)")
    args = parser.parse_args(argv)
    deployment_id = deploy(args.params or str(default_params_path()), args.source, not args.no_schedule)
    print(f"deployment cxr-retrain/{DEPLOYMENT} ({deployment_id}) on work pool "
          f"{load_config(args.params).team.work_pool}; run it now with: "
          f"prefect deployment run cxr-retrain/{DEPLOYMENT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
