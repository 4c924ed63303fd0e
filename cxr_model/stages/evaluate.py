"""The evaluate stage: threshold on validation, one scoring of the test split, shortcut probes."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cxr_model.config import Config
from cxr_model.stages.common import log, require, split_arrays, step, test_log, write_json


@step("evaluate")
def evaluate(cfg: Config) -> dict:
    """Threshold from validation, then one scoring of the test split, with plots."""
    from cxr_model import data, evaluation, plots, probes, training
    from cxr_model.data import LABELS
    from cxr_model.model import keras

    lay = cfg.layout
    arrays = split_arrays(cfg)
    model = keras.models.load_model(require(lay.model), compile=False)
    val, test = arrays["val"], arrays["test"]
    p_val, p_test = training.predict(model, val.x), training.predict(model, test.x)
    types_val, types_test = (np.array([data.pneumonia_type(path) for path in a.paths]) for a in (val, test))
    patients_val, patients_test = (np.array([data.patient_id(path) for path in a.paths]) for a in (val, test))
    metrics = evaluation.evaluate_predictions(val.y, p_val, test.y, p_test, cfg.evaluate, types_val, types_test,
                                              patients_val, patients_test)
    # Validation only: shortcuts that would cost specificity on another site's films.
    def predict(x: np.ndarray) -> np.ndarray:
        return training.predict(model, x)

    metrics["val_probes"] = probes.run_probes(predict, val.x, val.y, p_val)
    metrics["val_aspect_jitter_auc"] = probes.aspect_jittered_auc(predict, val.x, val.y)
    write_json(lay.metrics, metrics)
    t = metrics["threshold"]["threshold"]
    names = np.array(LABELS)
    pd.DataFrame({"path": test.paths, "label": names[test.y], "probability": p_test,
                  "predicted": names[(p_test >= t).astype(int)]}).to_csv(lay.predictions, index=False)
    out = lay.evaluate_dir
    plots.confusion_matrix(metrics["test"], out / "confusion_matrix.png",
                           f"test, threshold {t:.3f} ({metrics['threshold']['method']})")
    plots.confusion_matrix(metrics["test_at_0_5"], out / "confusion_matrix_at_0_5.png", "test, threshold 0.5")
    if len(set(test.y)) == 2:
        evaluation.roc_points(test.y, p_test).to_csv(lay.roc_points, index=False)
        plots.roc(test.y, p_test, t, out / "roc.png", metrics["test"]["auc"])
        plots.precision_recall(test.y, p_test, out / "precision_recall.png", metrics["test"]["average_precision"])
    plots.reliability(metrics["calibration"], out / "reliability.png")
    plots.hardest_cases(val.x, val.y, p_val, t, out / "validation_hardest.png")
    plots.probe_scores(metrics["val_probes"], {n: label for n, (label, _) in probes.PROBES.items()},
                       out / "validation_probes.png")
    m = metrics["test"]
    ci, ends = metrics["threshold"]["ci95"], metrics["test_at_threshold_ci95"]
    test_log.info("evaluate: threshold %.4f (%s); test AUC %.4f, accuracy %.4f, sensitivity %.4f, specificity %.4f",
                  t, metrics["threshold"]["method"], m["auc"], m["accuracy"], m["sensitivity"], m["specificity"])
    log.info("evaluate: validation AUC %.4f, and %.4f with the films' aspect scrambled (a squash cue would lower it)",
             metrics["val"]["auc"], metrics["val_aspect_jitter_auc"])
    test_log.info("evaluate: over validation resamples the threshold would land in %.3f-%.3f (95 %%); test accuracy "
                  "at those ends %.4f and %.4f", ci["low"], ci["high"], ends["low"]["accuracy"], ends["high"]["accuracy"])
    return {"threshold": t, "threshold_ci95": ci, "test": m, "test_at_threshold_ci95": ends,
            "test_ci95": metrics["test_ci95"], "test_ci95_resampled": metrics["test_ci95_resampled"]}
