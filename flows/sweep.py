"""The sweep flow: [import-data ->] ingest -> validate -> profile once, then one training per
setting of sweep.space as parallel tasks on Dask, the best picked by validation AUC, and only that
one evaluated on the test split, registered and offered for promotion."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from prefect import flow
from prefect_dask import DaskTaskRunner

from cxr_model.config import Config, load_config
from cxr_model.locking import pipeline_lock
from flows.training import import_if_versioned, run_cli, run_steps
from tasks import steps as t


def task_runner(cfg: Config) -> DaskTaskRunner:
    """The scheduler at sweep.dask.address, else a local cluster of processes sized to the cores."""
    dask = cfg.sweep.dask
    if dask.address:
        return DaskTaskRunner(address=dask.address)
    workers = dask.n_workers or os.cpu_count() or 1
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": dask.threads_per_worker,
                                          "processes": True, "dashboard_address": None})


@flow(name="cxr-sweep", log_prints=True)
def sweep_flow(params: str = "params.yaml") -> dict:
    """Parallel trials on the same data; validation AUC alone chooses; the test split is scored once."""
    params = str(Path(params).resolve())
    cfg = load_config(params)
    results: dict = {}
    with pipeline_lock(cfg):
        import_if_versioned(params, results)
        run_steps(params, ["ingest", "validate", "profile"], results)
        plan = t.sweep_plan(params)
        print(f"sweep: {len(plan['settings'])} trial(s), parent MLflow run {plan['sweep_id']}")
        futures = [t.sweep_trial.submit(params, plan, i, overrides) for i, overrides in enumerate(plan["settings"])]
        chosen = t.sweep_choose(params, plan, [f.result() for f in futures])
        results["sweep"] = chosen
        if chosen.get("register_overrides"):
            run_steps(params, ["evaluate", "register", "promote"], results, chosen["register_overrides"])
    print(f"sweep: best trial {chosen['best_trial']} ({chosen['best_overrides']}), validation AUC "
          f"{chosen['best_val_auc']:.4f}; table: {chosen['table']}")
    if "evaluate" in results:
        m = results["evaluate"]["test"]
        print(f"best trial on test (scored once): AUC {m['auc']:.4f}, accuracy {m['accuracy']:.4f}, "
              f"sensitivity {m['sensitivity']:.4f}, specificity {m['specificity']:.4f}; registered version "
              f"{results['register']['version']}, promoted: {results['promote']['promoted']}")
    return results


def _sweep(params: str, args: argparse.Namespace) -> None:
    sweep_flow.with_options(task_runner=task_runner(load_config(params)))(params=params)


_sweep.__name__ = "sweep_flow"


def main(argv: list[str] | None = None) -> int:
    return run_cli(_sweep, argv, "Run a hyperparameter sweep of the cxr model on Dask (Prefect).")


if __name__ == "__main__":
    sys.exit(main())
