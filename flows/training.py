"""The training flow: [import-data ->] ingest -> validate -> profile -> train -> evaluate ->
register -> promote, one Prefect task per step."""

from __future__ import annotations

import argparse
import atexit
import logging
import sys
from pathlib import Path

from prefect import flow

from cxr_model import arrivals
from cxr_model.config import default_params_path, load_config
from cxr_model.errors import CxrError
from cxr_model.locking import pipeline_lock
from cxr_model.processes import unanswered
from tasks import steps as t

PIPELINE = (
    ("ingest", t.ingest), ("validate", t.validate), ("profile", t.profile),
    ("train", t.train), ("evaluate", t.evaluate), ("register", t.register), ("promote", t.promote),
)
TASKS = dict(PIPELINE)


def import_if_versioned(params: str, results: dict) -> None:
    """Bring the landing folder in as a dataset version when the pipeline reads the DVC copy."""
    if load_config(params).data.versioned:
        results["import-data"] = t.import_data(params)


def run_steps(params: str, names: list[str], results: dict, overrides: dict | None = None) -> dict:
    """Run the named steps in order (on overridden settings, e.g. a sweep trial's); a failing
    step raises and stops the rest."""
    for name in names:
        results[name] = TASKS[name](params, overrides) if overrides else TASKS[name](params)
    return results


@flow(name="cxr-training", log_prints=True)
def training_flow(params: str = "params.yaml") -> dict:
    """Train, evaluate, register and (if it earns it) promote a model on the current data."""
    params = str(Path(params).resolve())
    cfg = load_config(params)
    results: dict = {}
    with pipeline_lock(cfg):
        import_if_versioned(params, results)
        t.start_tracking(params, "train")
        run_steps(params, [name for name, _ in PIPELINE], results)
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
        if ev.get("test_ci95"):
            ci = ev["test_ci95"]
            lines.append(f"95 % intervals, redrawing {ev.get('test_ci95_resampled', 'films')}: " + ", ".join(
                f"{name} {ci[name]['low']:.4f}-{ci[name]['high']:.4f}"
                for name in ("auc", "accuracy", "sensitivity", "specificity") if name in ci))
        if ev.get("threshold_ci95"):
            ci, ends = ev["threshold_ci95"], ev["test_at_threshold_ci95"]
            lines.append(f"threshold over validation resamples: {ci['low']:.3f}-{ci['high']:.3f} (95 %); "
                         f"test accuracy at those ends {ends['low']['accuracy']:.4f} and {ends['high']['accuracy']:.4f}")
    reg = results.get("register", {})
    if reg:
        lines.append(f"registered {reg['registered_model']} version {reg['version']} (run {reg['run_id']})")
    promo = results.get("promote", {})
    if promo:
        verdict = "promoted to champion" if promo["promoted"] else "not promoted"
        lines.append(f"version {promo['version']} {verdict}: {'; '.join(promo['reasons'])}")
        arrived = (promo.get("comparison") or {}).get("on_arrivals")
        if arrived is not None:
            lines.append(arrivals.summary(arrived, promo["previous_champion"]))
    return "\n".join(lines)


def check_prefect_api() -> None:
    """A Prefect server named by PREFECT_API_URL that does not answer, said in one sentence (Prefect
    raises it as a traceback); without one, each flow run starts its own temporary server."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    reason = unanswered(url.rstrip("/") + "/health", 5.0) if url else None
    if reason is not None:
        raise CxrError(f"the Prefect API at {url} does not answer ({reason}): start it (`make team-up`), or "
                       "unset PREFECT_API_URL so that the flow starts a temporary server of its own")


def run_cli(flow_fn, argv: list[str] | None, description: str, extra=None) -> int:
    """Shared command line of the flows: --params, clean one-sentence stop on user errors."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default=None, help="parameters file (default: $CXR_PARAMS or ./params.yaml)")
    if extra:
        extra(parser)
    args = parser.parse_args(argv)
    logging.getLogger("cxr").setLevel(logging.INFO)
    params = args.params or str(default_params_path())
    # Registered before Prefect starts its temporary server, so it runs after the server's own
    # shutdown message: the reason the flow stopped is the last thing a user reads.
    closing: list[str] = []
    atexit.register(lambda: closing and print(closing[0], file=sys.stderr, flush=True))
    try:
        check_prefect_api()
        flow_fn(params, args)
    except CxrError as exc:
        closing.append(f"\ncxr {flow_fn.__name__.replace('_', ' ')} stopped: {exc}")
        return 1
    return 0


def _training(params: str, args: argparse.Namespace) -> None:
    training_flow(params=params)


_training.__name__ = "training_flow"


def main(argv: list[str] | None = None) -> int:
    return run_cli(_training, argv, "Run the cxr training flow (Prefect).")


if __name__ == "__main__":
    sys.exit(main())
