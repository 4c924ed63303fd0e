"""The training flow: [import-data ->] ingest -> validate -> profile -> train -> evaluate -> register."""

from __future__ import annotations

import argparse
import atexit
import logging
import sys
from pathlib import Path

from prefect import flow

from cxr_model.config import default_params_path, load_config
from cxr_model.errors import CxrError
from tasks import steps as t

PIPELINE = (
    ("ingest", t.ingest), ("validate", t.validate), ("profile", t.profile),
    ("train", t.train), ("evaluate", t.evaluate), ("register", t.register),
)


@flow(name="cxr-training", log_prints=True)
def training_flow(params: str = "params.yaml") -> dict:
    """Run every step in order; a failing step (a failed validation gate) stops the rest."""
    params = str(Path(params).resolve())
    results = {}
    if load_config(params).data.versioned:
        results["import-data"] = t.import_data(params)
    for name, task in PIPELINE:
        results[name] = task(params)
    print(report(results))
    return results


def report(results: dict) -> str:
    """Wall time per step, training speed and test metrics, as a few readable lines."""
    lines = ["", "step           seconds"]
    lines += [f"{name:<12} {res.get('seconds', 0):>8.1f}" for name, res in results.items()]
    lines.append(f"{'total':<12} {sum(r.get('seconds', 0) for r in results.values()):>8.1f}")
    train = results.get("train", {})
    if train:
        lines.append(f"training: {train['epochs_run']} epochs, {train['train_images_per_second']:.0f} images/s, "
                     f"best validation AUC {train['best_val_auc']:.4f} at epoch {train['best_epoch']}")
    ev = results.get("evaluate", {})
    if ev:
        m = ev["test"]
        lines.append(f"test @ threshold {ev['threshold']:.4f}: AUC {m['auc']:.4f}  accuracy {m['accuracy']:.4f}  "
                     f"sensitivity {m['sensitivity']:.4f}  specificity {m['specificity']:.4f}  F1 {m['f1']:.4f}")
    reg = results.get("register", {})
    if reg:
        lines.append(f"registered {reg['registered_model']} version {reg['version']} (run {reg['run_id']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the cxr training flow (Prefect).")
    parser.add_argument("--params", default=None, help="parameters file (default: $CXR_PARAMS or ./params.yaml)")
    args = parser.parse_args(argv)
    logging.getLogger("cxr").setLevel(logging.INFO)
    params = args.params or str(default_params_path())
    # Registered before Prefect starts its temporary server, so it runs after the server's own
    # shutdown message: the reason the flow stopped is the last thing a user reads.
    closing: list[str] = []
    atexit.register(lambda: closing and print(closing[0], file=sys.stderr, flush=True))
    try:
        training_flow(params=params)
    except CxrError as exc:
        closing.append(f"\ncxr training flow stopped: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
