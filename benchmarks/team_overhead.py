"""What the team stack costs: start-up time of each component, and the wall time per step of the
same training flow on all the data with the embedded defaults (SQLite + Prefect's temporary
server) versus the stack (MLflow server on PostgreSQL + Prefect server).

    .venv/bin/python -m benchmarks.team_overhead [--epochs 1]

Both flows share one warm decode cache, so the difference is the tracking and orchestration
overhead (training itself is the same CPU work either way; --epochs only scales it)."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from cxr_model.processes import free_port

ROOT = Path(__file__).resolve().parents[1]
STEP_LINE = re.compile(r"^([a-z-]+)\s+(\d+\.\d)$")


def _params(folder: Path, epochs: int, state: Path) -> Path:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    from cxr_model.config import load_config

    raw["data"].update(landing=str(load_config(ROOT / "params.yaml").landing), versioned=False)
    raw["train"]["epochs"] = epochs
    raw["mlflow"].update(tracking_uri="sqlite:///mlruns/mlflow.db", artifact_root="mlruns/artifacts")
    raw["team"].update(state_dir=str(state), postgres_port=free_port(), mlflow_port=free_port(), prefect_port=free_port(),
                       work_pool="cxr-bench")
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _flow(params: Path, env: dict) -> tuple[dict[str, float], float]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "flows.training", "--params", str(params)], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"flow failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    text = out.stdout + out.stderr
    steps = {}
    for line in text.splitlines():
        match = STEP_LINE.match(line.split(" - ")[-1].strip())
        if match:
            steps[match.group(1)] = float(match.group(2))
    return steps, wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    from cxr_model import stack
    from cxr_model.config import load_config

    work = Path(tempfile.mkdtemp(prefix="cxr-bench-"))
    work.chmod(0o755)  # PostgreSQL runs as the postgres user
    params = _params(work, args.epochs, work / "state")
    cfg = load_config(params)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_API_URL", "CXR_"))}
    try:
        print("warming the decode cache (cxr ingest + profile) ...", flush=True)
        for step in ("ingest", "profile"):
            subprocess.run([str(Path(sys.executable).with_name("cxr")), "--params", str(params), step],
                           cwd=ROOT, env=base, check=True, capture_output=True)
        startup = stack.up(cfg, ["postgres", "mlflow", "prefect"])
        print("start-up seconds (first start, initdb included): "
              + ", ".join(f"{k} {v:.1f}" for k, v in startup.items()), flush=True)
        print(f"flow with the embedded defaults ({args.epochs} epoch(s)) ...", flush=True)
        local, local_wall = _flow(params, base)
        print("flow against the team stack ...", flush=True)
        team, team_wall = _flow(params, {**base, **stack.Stack(cfg).client_env()})
        stack.down(cfg)
        restart = stack.up(cfg, ["postgres", "mlflow", "prefect"])
        print("start-up seconds (restart, data kept): " + ", ".join(f"{k} {v:.1f}" for k, v in restart.items()))
    finally:
        stack.down(cfg)
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'step':<12} {'embedded':>9} {'team':>9} {'extra':>8}")
    for name in local:
        print(f"{name:<12} {local[name]:>9.1f} {team.get(name, float('nan')):>9.1f} "
              f"{team.get(name, float('nan')) - local[name]:>+8.1f}")
    print(f"{'process wall':<12} {local_wall:>9.1f} {team_wall:>9.1f} {team_wall - local_wall:>+8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
