"""What the model-scoring benchmarks share: the `--model`/`--params` command line, the saved
model and the decoded split arrays of the pipeline's last ingest."""

from __future__ import annotations

import argparse
from typing import Callable


def load(description: str, argv: list[str] | None, several: bool = False,
         options: Callable[[argparse.ArgumentParser], None] | None = None):
    """Parse `--model`/`--params` (and a benchmark's own `options`); return (config, loaded Keras
    model, arrays by split, parsed arguments), or with `several` a list of models, one per
    `--model` path."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", default=["artifacts/train/model.keras"])
    parser.add_argument("--params", default="params.yaml")
    if options is not None:
        options(parser)
    args = parser.parse_args(argv)
    if not several and len(args.model) > 1:
        parser.error("this benchmark scores one model: give one --model path")

    from cxr_model.config import load_config
    from cxr_model.model import keras
    from cxr_model.stages.common import split_arrays

    cfg = load_config(args.params)
    arrays = split_arrays(cfg)
    print(f"{', '.join(args.model)}: {len(arrays['val'])} validation, {len(arrays['test'])} test films")
    models = [keras.models.load_model(path, compile=False) for path in args.model]
    return cfg, models if several else models[0], arrays, args


def chosen_threshold_figures(cfg, val, p_val, test, p_test) -> dict[str, float]:
    """Threshold chosen on validation as the evaluate step does, then the test split's figures."""
    from cxr_model.evaluation import choose_threshold, ranking_metrics, threshold_metrics

    t = float(choose_threshold(val.y, p_val, cfg.evaluate)["threshold"])
    at_t = threshold_metrics(test.y, p_test, t)
    return {"val_auc": ranking_metrics(val.y, p_val)["auc"], "auc": ranking_metrics(test.y, p_test)["auc"],
            "threshold": t, "accuracy": at_t["accuracy"], "sensitivity": at_t["sensitivity"],
            "specificity": at_t["specificity"], "accuracy_at_0_5": threshold_metrics(test.y, p_test, 0.5)["accuracy"]}


def test_cells(f: dict[str, float]) -> str:
    """The test columns every model-scoring table shares: AUC, threshold, accuracy, sensitivity,
    specificity at it, and accuracy at 0.5."""
    return (f"| {f['auc']:.4f} | {f['threshold']:.3f} | {f['accuracy']:.4f} | {f['sensitivity']:.4f} "
            f"| {f['specificity']:.4f} | {f['accuracy_at_0_5']:.4f} |")
