"""Try a configuration on the full data without touching the main pipeline outputs.

    python -m benchmarks.experiment NAME --set model.arch=residual --set train.epochs=20
    python -m benchmarks.experiment --table          # the results table, as Markdown
    python -m benchmarks.experiment NAME --blind ... # no test figure printed (judge on validation first)
    python -m benchmarks.experiment --table --blind --only NAME   # validation columns of a series

Each run trains and evaluates through the same library steps as the flow, in
artifacts/experiments/NAME (sharing the main manifest and decoded-array cache, so run
`cxr ingest` first), logs an MLflow run to the experiment `cxr-pneumonia-experiments`, and
appends one row to benchmarks/experiments.jsonl. Configurations are compared by validation
metrics; test metrics are recorded for every row so the gap between the two stays visible.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "experiments.jsonl"
EXPERIMENT = "cxr-pneumonia-experiments"


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """`a.b.c=value` strings (value parsed as YAML) applied to a copy of the params tree."""
    out = copy.deepcopy(raw)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set needs key=value, got {item!r}")
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return out


def prepare(name: str, overrides: list[str], params: Path):
    """The experiment's settings and folder: the main pipeline's decoded arrays, and its manifest
    too unless an override changes the data (the split's seed or fraction, the source): then
    ingest runs again into the experiment's own folder, so the override is not silently lost."""
    from cxr_model import steps
    from cxr_model.config import build_config, load_config

    base = load_config(params)
    raw = apply_overrides(base.raw, overrides)
    raw["artifacts_dir"] = str(base.artifacts / "experiments" / name)
    raw.setdefault("mlflow", {})["experiment"] = EXPERIMENT
    cfg = build_config(raw, base.root)
    own_data = any(item.partition("=")[0].startswith("data.") for item in overrides)
    cfg.artifacts.mkdir(parents=True, exist_ok=True)
    for shared in ("cache",) if own_data else ("ingest", "cache"):
        link = cfg.artifacts / shared
        if not link.exists():
            os.symlink(base.artifacts / shared, link)
    if own_data:
        if (cfg.artifacts / "ingest").is_symlink():  # left by an earlier run of this name without it
            (cfg.artifacts / "ingest").unlink()
        steps.ingest(cfg)
    elif not base.layout.manifest.exists():
        raise SystemExit(f"{base.layout.manifest} missing: run `cxr ingest` first")
    return cfg


def run(name: str, overrides: list[str], params: Path, note: str) -> dict:
    """Train and evaluate one configuration; return its results row."""
    import mlflow

    from cxr_model import steps, tracking
    from cxr_model.cli import setup_logging

    setup_logging()
    cfg = prepare(name, overrides, params)
    fit = steps.train(cfg)
    metrics = steps.evaluate(cfg) and json.loads(cfg.layout.metrics.read_text())
    row = {
        "name": name, "overrides": overrides, "note": note, "git_commit": tracking.git_commit(ROOT),
        "val_auc": metrics["val"]["auc"], "val_ap": metrics["val"]["average_precision"],
        "threshold": metrics["threshold"]["threshold"], "test": metrics["test"],
        "test_at_0_5": metrics["test_at_0_5"], "test_ci95": metrics.get("test_ci95", {}),
        "epochs_run": fit["epochs_run"], "best_epoch": fit["best_epoch"],
        "train_seconds": fit["train_seconds"], "train_images_per_second": fit["train_images_per_second"],
        **robustness(metrics),
    }
    experiment_id = tracking.connect(cfg)
    with mlflow.start_run(experiment_id=experiment_id, run_name=name):
        mlflow.set_tags({"cxr.kind": "experiment", "cxr.overrides": " ".join(overrides), "cxr.note": note})
        mlflow.log_params(cfg.flat_params())
        import pandas as pd

        tracking.log_history(pd.read_csv(cfg.layout.history))
        tracking.log_metric_tree("", {"test": metrics["test"], "test_at_0_5": metrics["test_at_0_5"],
                                      "val_final": metrics["val"], "fit": fit})
        tracking.log_files([cfg.layout.training_curves, cfg.layout.metrics,
                            *sorted(cfg.layout.evaluate_dir.glob("*.png"))], "")
    with RESULTS.open("a") as fh:
        fh.write(json.dumps(row) + "\n")
    return row


def robustness(metrics: dict) -> dict:
    """What the selection rules read besides validation AUC (results.md): each shortcut probe's
    NORMAL ratio, validation AUC per pneumonia type and with the squash scrambled."""
    probes = {name: p["normal_ratio"] for name, p in metrics.get("val_probes", {}).items()}
    by_type = {kind: v["auc"] for kind, v in metrics.get("by_type", {}).get("val", {}).items()}
    return {"val_probe_ratios": probes, "val_auc_by_type": by_type,
            "val_aspect_jitter_auc": metrics.get("val_aspect_jitter_auc")}


def read_rows(path: Path = RESULTS) -> list[dict]:
    """Every recorded run, in the order they ran."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _figure(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def largest_probe(r: dict) -> tuple[str, float] | None:
    """The row's shortcut probe with the highest NORMAL ratio (the unchanged films, `as_is`, left
    out), or None for a row recorded before the probes: what the probe rule reads."""
    from cxr_model.probes import largest_ratio

    return largest_ratio(r.get("val_probe_ratios", {}))


def _largest_probe_cell(r: dict) -> str:
    largest = largest_probe(r)
    return "—" if largest is None else f"{largest[1]:.2f} ({largest[0]})"


# (header, cell, reads the test split): a blind table leaves out the last kind.
COLUMNS = [
    ("run", lambda r: r["name"], False),
    ("overrides", lambda r: " ".join(r["overrides"]) or "(params.yaml)", False),
    ("val AUC", lambda r: f"{r['val_auc']:.4f}", False),
    ("val AUC viral", lambda r: _figure(r.get("val_auc_by_type", {}).get("virus"), 4), False),
    ("val AUC aspect-jittered", lambda r: _figure(r.get("val_aspect_jitter_auc"), 4), False),
    ("largest probe", _largest_probe_cell, False),
    ("noise probe", lambda r: _figure(r.get("val_probe_ratios", {}).get("noise_10"), 2), False),
    ("test AUC", lambda r: f"{r['test']['auc']:.4f}", True),
    ("threshold", lambda r: f"{r['threshold']:.3f}", False),
    ("test acc", lambda r: f"{r['test']['accuracy']:.4f}", True),
    ("sens", lambda r: f"{r['test']['sensitivity']:.4f}", True),
    ("spec", lambda r: f"{r['test']['specificity']:.4f}", True),
    ("acc @0.5", lambda r: f"{r['test_at_0_5']['accuracy']:.4f}", True),
    ("epochs", lambda r: f"{r['best_epoch']}/{r['epochs_run']}", False),
    ("train s", lambda r: f"{r['train_seconds']:.0f}", False),
    ("img/s", lambda r: f"{r['train_images_per_second']:.0f}", False),
]


def table(rows: list[dict], blind: bool = False) -> str:
    """Markdown table of every row, best validation AUC first (rows recorded before the probes,
    types or the aspect-jittered AUC were kept show —). Blind: no column that reads the test
    split, so a series can be judged on validation before anyone sees its test figures."""
    columns = [(head, cell) for head, cell, reads_test in COLUMNS if not (blind and reads_test)]
    lines = ["| " + " | ".join(head for head, _ in columns) + " |", "|---" * len(columns) + "|"]
    for r in sorted(rows, key=lambda r: -r["val_auc"]):
        lines.append("| " + " | ".join(cell(r) for _, cell in columns) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", help="experiment name (a folder under artifacts/experiments)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--note", default="")
    parser.add_argument("--table", action="store_true", help="print the results table and exit")
    parser.add_argument("--blind", action="store_true",
                        help="show no test figure: neither in the run's log and table nor in --table")
    parser.add_argument("--only", action="append", default=[], metavar="PREFIX",
                        help="--table: only runs whose name starts with this (repeatable)")
    args = parser.parse_args(argv)
    if args.table:
        rows = [r for r in read_rows(RESULTS) if not args.only or r["name"].startswith(tuple(args.only))]
        print(table(rows, blind=args.blind))
        return 0
    if not args.name:
        parser.error("a NAME is needed (or --table)")
    if args.blind:
        from cxr_model.stages.common import test_log

        test_log.disabled = True
    row = run(args.name, args.overrides, args.params, args.note)
    print(table([row], blind=args.blind))
    return 0


if __name__ == "__main__":
    sys.exit(main())
