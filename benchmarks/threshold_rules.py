"""How does each threshold rule's operating point hold on another site's films? (TR1 in
results.md.) Validation only decides; the test split is printed beside it.

    python -m benchmarks.threshold_rules --model A.keras [B.keras ...]

For each model: a threshold per rule from the unchanged validation films, then sensitivity and
specificity at it on the validation films changed by each shortcut probe (simulated sites),
as the mean and the worst over the probes. Needs `cxr ingest` and the decoded-array cache.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

RULES = {  # label -> overrides of the evaluate section
    "youden_midrange 0.02": {"threshold_method": "youden_midrange", "youden_tolerance": 0.02},
    "youden_midrange 0": {"threshold_method": "youden_midrange", "youden_tolerance": 0.0},
    "target_sensitivity 0.95": {"threshold_method": "target_sensitivity", "target_sensitivity": 0.95},
    "target_sensitivity 0.98": {"threshold_method": "target_sensitivity", "target_sensitivity": 0.98},
    "fixed 0.5": {"threshold_method": "fixed", "fixed_threshold": 0.5},
}


def held(y: np.ndarray, shifted: list[np.ndarray], threshold: float) -> dict[str, float]:
    """Mean and worst sensitivity and specificity at `threshold` over several shifted scorings."""
    from cxr_model.evaluation import threshold_metrics

    m = [threshold_metrics(y, p, threshold) for p in shifted]
    sens, spec = [r["sensitivity"] for r in m], [r["specificity"] for r in m]
    return {"sens_mean": float(np.mean(sens)), "sens_worst": float(np.min(sens)),
            "spec_mean": float(np.mean(spec)), "spec_worst": float(np.min(spec))}


def main(argv: list[str] | None = None) -> int:
    from benchmarks.saved_model import load
    from cxr_model import training
    from cxr_model.evaluation import choose_threshold, threshold_metrics
    from cxr_model.probes import PROBES

    cfg, models, arrays, _ = load(__doc__, argv, several=True)
    val, test = arrays["val"], arrays["test"]
    print("| model | rule | threshold | val sens | val spec | sites: sens mean (worst) | sites: spec mean (worst) "
          "| test acc | test sens | test spec |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for k, model in enumerate(models, 1):
        p_val, p_test = training.predict(model, val.x), training.predict(model, test.x)
        shifted = [training.predict(model, change(val.x)) for _, change in PROBES.values()]
        for label, overrides in RULES.items():
            t = float(choose_threshold(val.y, p_val, replace(cfg.evaluate, **overrides))["threshold"])
            v, s, te = threshold_metrics(val.y, p_val, t), held(val.y, shifted, t), threshold_metrics(test.y, p_test, t)
            print(f"| {k} | {label} | {t:.3f} | {v['sensitivity']:.4f} | {v['specificity']:.4f} "
                  f"| {s['sens_mean']:.4f} ({s['sens_worst']:.4f}) | {s['spec_mean']:.4f} ({s['spec_worst']:.4f}) "
                  f"| {te['accuracy']:.4f} | {te['sensitivity']:.4f} | {te['specificity']:.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
