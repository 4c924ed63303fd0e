"""What the model-scoring benchmarks share: the `--model`/`--params` command line, the saved
model and the decoded split arrays of the pipeline's last ingest."""

from __future__ import annotations

import argparse


def load(description: str, argv: list[str] | None, several: bool = False):
    """Parse `--model`/`--params`; return (config, loaded Keras model, arrays by split), or with
    `several` a list of models, one per `--model` path."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=["artifacts/train/model.keras"] if several else "artifacts/train/model.keras",
                        nargs="+" if several else None)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)

    from cxr_model.config import load_config
    from cxr_model.model import keras
    from cxr_model.steps import _arrays

    cfg = load_config(args.params)
    arrays = _arrays(cfg)
    paths = args.model if several else [args.model]
    print(f"{', '.join(paths)}: {len(arrays['val'])} validation, {len(arrays['test'])} test films")
    models = [keras.models.load_model(path, compile=False) for path in paths]
    return cfg, models if several else models[0], arrays


def chosen_threshold_figures(cfg, val, p_val, test, p_test) -> dict[str, float]:
    """Threshold chosen on validation as the evaluate step does, then the test split's figures."""
    from cxr_model import evaluation

    m = evaluation.evaluate_predictions(val.y, p_val, test.y, p_test, cfg.evaluate)
    t = m["test"]
    return {"val_auc": m["val"]["auc"], "auc": t["auc"], "threshold": m["threshold"]["threshold"],
            "accuracy": t["accuracy"], "sensitivity": t["sensitivity"], "specificity": t["specificity"],
            "accuracy_at_0_5": m["test_at_0_5"]["accuracy"]}
