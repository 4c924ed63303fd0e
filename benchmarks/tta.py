"""Does test-time augmentation pay for its time? Scores a trained model with and without it.

    python -m benchmarks.tta                                   # artifacts/train/model.keras
    python -m benchmarks.tta --model artifacts/experiments/R5/train/model.keras

Averages the model's probabilities over the image itself plus centred zoom-ins and small
shifts (views the training augmentation also produces), chooses the threshold on validation
exactly as the evaluate step does, and prints validation AUC, test metrics and the inference
cost of each variant (the framing probe that used to follow is in benchmarks/probes.py).
Needs `cxr ingest` (manifest) and the decoded-array cache of that run.
"""

from __future__ import annotations

import time

import numpy as np


def views(x: np.ndarray, variant: str) -> list[np.ndarray]:
    """The augmented copies of a (n, s, s, 1) uint8 batch that one TTA variant averages over."""
    from cxr_model.probes import centre_crop

    size = x.shape[1]
    out = [x]
    if variant in ("zoom", "zoom+shift"):
        out += [centre_crop(x, crop) for crop in (0.9, 0.8)]
    if variant in ("shift", "zoom+shift"):
        step = max(1, size // 32)
        for dy, dx in ((step, 0), (-step, 0), (0, step), (0, -step)):
            out.append(np.roll(x, (dy, dx), axis=(1, 2)))
    return out


def main(argv: list[str] | None = None) -> int:
    from benchmarks.saved_model import chosen_threshold_figures, load, test_cells
    from cxr_model import training

    cfg, model, arrays = load(__doc__, argv)
    val, test = arrays["val"], arrays["test"]
    print("| variant | views | val AUC | test AUC | threshold | test acc | sens | spec | acc @0.5 | ms/image |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for variant in ("none", "zoom", "shift", "zoom+shift"):
        start = time.perf_counter()
        val_views = views(val.x, variant)
        p_val = np.mean([training.predict(model, v) for v in val_views], axis=0)
        p_test = np.mean([training.predict(model, v) for v in views(test.x, variant)], axis=0)
        ms = 1000 * (time.perf_counter() - start) / (len(val) + len(test))
        f = chosen_threshold_figures(cfg, val, p_val, test, p_test)
        print(f"| {variant} | {len(val_views)} | {f['val_auc']:.4f} {test_cells(f)} {ms:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
