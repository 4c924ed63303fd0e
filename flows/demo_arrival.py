"""Demo of scheduled retraining: hold back part of the training images, then release them into
a landing folder batch by batch, running the retrain flow after each arrival.

    python -m flows.demo_arrival --batches 3 [--quick]

The MLflow UI then shows one run per batch (experiment <experiment>-demo) and the registry the
promotion decisions (model <registered_model>-demo: the project's own model and champion are
never touched), and each retrain measures the demo's champion on the patients just arrived.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
from pathlib import Path

import yaml

from cxr_model.config import DATA_ENV, default_params_path, load_config
from cxr_model.data import LABELS, discover, patient_id
from flows.retrain import retrain_flow


def plan_batches(source: Path, batches: int, seed: int) -> list[list[str]]:
    """Training files grouped by patient into an initial set plus `batches` arrivals."""
    found = [f.path for f in discover(source, (".jpeg", ".jpg", ".png")) if f.source_split != "test"]
    def bucket(path: str) -> int:
        digest = hashlib.sha256(f"{seed}:{patient_id(path)}".encode()).digest()
        return digest[0] % (batches + 1)
    groups: list[list[str]] = [[] for _ in range(batches + 1)]
    for path in found:
        groups[bucket(path)].append(path)
    return groups


def release(source: Path, landing: Path, paths: list[str]) -> None:
    for rel in paths:
        (landing / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / rel, landing / rel)


def fresh_demo_model(cfg) -> None:
    """Each demo starts with no demo model: a champion left by the last demo would otherwise be
    compared with, and its data would already hold every batch."""
    from mlflow.exceptions import MlflowException

    from cxr_model import tracking

    tracking.connect(cfg)
    try:
        tracking.client(cfg).delete_registered_model(cfg.mlflow.registered_model)
        print(f"=== demo: removed the last demo's registered model {cfg.mlflow.registered_model}")
    except MlflowException:
        pass  # none yet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default=None)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--workdir", default="artifacts/demo")
    parser.add_argument("--quick", action="store_true", help="64 px, 3 epochs: minutes instead of an hour")
    args = parser.parse_args(argv)
    cfg = load_config(args.params or default_params_path())
    source = cfg.landing
    work = Path(args.workdir).resolve()
    if work.exists():
        shutil.rmtree(work)
    landing = work / "landing"
    for label in LABELS:
        shutil.copytree(source / "test" / label, landing / "test" / label)
    raw = dict(cfg.raw)
    raw["data"] = {**raw["data"], "landing": str(landing), "versioned": False}
    raw["artifacts_dir"] = str(work / "artifacts")
    # The demo's models get a registered model and experiment of their own: a quick model must
    # never become the champion that `cxr predict` and serving use.
    demo = {"experiment": f"{cfg.mlflow.experiment}-demo", "registered_model": f"{cfg.mlflow.registered_model}-demo"}
    raw["mlflow"] = {**raw["mlflow"], "tracking_uri": cfg.tracking_uri, "artifact_root": str(cfg.artifact_root), **demo}
    os.environ.pop(DATA_ENV, None)  # it named the source; the flows must read the demo's landing
    if args.quick:
        raw["preprocess"] = {**raw["preprocess"], "image_size": 64}
        raw["train"] = {**raw["train"], "epochs": 3}
        gates = {"min_val_auc": min(cfg.promote.min_val_auc, 0.9),
                 "min_val_sensitivity": min(cfg.promote.min_val_sensitivity, 0.8)}
        raw["promote"] = {**raw["promote"], **gates}
        print(f"=== demo (quick): 64 px, 3 epochs, promotion gates lowered to validation AUC "
              f"{gates['min_val_auc']} and sensitivity {gates['min_val_sensitivity']} for these small models")
    params = work / "params.yaml"
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    fresh_demo_model(load_config(params))

    groups = plan_batches(source, args.batches, cfg.data.seed)
    for i, group in enumerate(groups):
        release(source, landing, group)
        what = "initial data" if i == 0 else f"batch {i}/{args.batches}"
        print(f"\n=== demo: released {what}: {len(group)} training images -> {landing}", flush=True)
        result = retrain_flow(params=str(params))
        promo = result.get("promote")
        if promo:
            verdict = "promoted to champion" if promo["promoted"] else "kept out"
            print(f"=== demo: version {promo['version']} {verdict}: {'; '.join(promo['reasons'])}", flush=True)
    print(f"\n=== demo done: see `make ui` (experiment {demo['experiment']}, model {demo['registered_model']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
