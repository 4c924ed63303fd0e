"""The retrain flow: bring in the landing folder, and train + promote only when the data
changed since the champion was trained and these settings have not already been rejected on it
(or when forced). `--serve` runs it on a schedule."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from prefect import flow

from cxr_model.config import load_config
from cxr_model.locking import pipeline_lock
from cxr_model.processes import free_port, start_service, stop_group, wait_service
from flows.training import PIPELINE, import_if_versioned, report, run_cli, run_steps
from tasks import steps as t


@flow(name="cxr-retrain", log_prints=True)
def retrain_flow(params: str = "params.yaml", force: bool = False) -> dict:
    """New data -> new model version, promoted only if it earns it; same data -> quick no-op."""
    params = str(Path(params).resolve())
    cfg = load_config(params)
    results: dict = {}
    with pipeline_lock(cfg):
        import_if_versioned(params, results)
        results["ingest"] = t.ingest(params)
        current = results["ingest"]["fingerprint"]
        needed, why = t.retrain_decision(params, current)
        if not needed and not force:
            print(f"retrain: {why} (data {current[:12]}); nothing to do")
            return {**results, "retrained": False}
        why = "forced" if force else why
        print(f"retrain: training on data {current[:12]} ({why})")
        t.start_tracking(params, "retrain")
        run_steps(params, [name for name, _ in PIPELINE if name != "ingest"], results)
    print(report(results))
    return {**results, "retrained": True}


def _add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true", help="retrain even if the data did not change")
    parser.add_argument("--serve", action="store_true",
                        help="serve a deployment that runs the flow on retrain.cron (params.yaml)")
    parser.add_argument("--interval", type=float, default=None,
                        help="with --serve: run every N seconds instead of the cron (demos, tests)")


def _with_local_server(params: str, argv: list[str]) -> None:
    """Scheduling needs a real Prefect server: start one on loopback, serve against it, stop it."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    prefect = Path(sys.executable).with_name("prefect")
    env = {**os.environ, "PREFECT_API_URL": api}
    cfg = load_config(params)
    log_path = cfg.layout.prefect_server_log
    log_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"starting a Prefect server on {api}, log {log_path} (set PREFECT_API_URL to use your own)",
          flush=True)
    server = start_service([str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                           log_path, cfg.root, {**env, "PREFECT_API_URL": ""})
    # SIGTERM (a service manager, Ctrl-C's cousin) must still stop the server we started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        wait_service("the Prefect server", f"{api}/health", server, 120, log_path)
        subprocess.run([sys.executable, "-m", "flows.retrain", *argv], env=env, check=False)
    finally:
        if not stop_group(server.pid):
            print(f"the Prefect server did not stop within 30 s and was killed (log {log_path})",
                  file=sys.stderr)


def _retrain(params: str, args: argparse.Namespace) -> None:
    if not args.serve:
        retrain_flow(params=params, force=args.force)
        return
    if not os.environ.get("PREFECT_API_URL"):
        argv = ["--params", params, "--serve"] + (["--force"] if args.force else [])
        _with_local_server(params, argv + (["--interval", str(args.interval)] if args.interval else []))
        return
    cfg = load_config(params)
    schedule = ({"interval": timedelta(seconds=args.interval)} if args.interval else {"cron": cfg.retrain.cron})
    print(f"serving deployment cxr-retrain/scheduled ({schedule}); Ctrl-C to stop", flush=True)
    # One run at a time: a run still training when the next one falls due must not be joined by
    # another (each would wait on the retrain lock, holding a process): the next run starts late.
    retrain_flow.serve(name="scheduled", parameters={"params": params, "force": args.force}, limit=1, **schedule)


_retrain.__name__ = "retrain_flow"


def main(argv: list[str] | None = None) -> int:
    return run_cli(_retrain, argv, "Run (or serve on a schedule) the cxr retrain flow (Prefect).", _add_options)


if __name__ == "__main__":
    sys.exit(main())
