"""Does test-time augmentation pay for its time? Scores trained models with and without it.

    python -m benchmarks.tta                                   # artifacts/train/model.keras
    python -m benchmarks.tta --model artifacts/experiments/R5/train/model.keras
    python -m benchmarks.tta --blind --variant aspect --model m1.keras m2.keras   # validation only

Averages each model's probabilities over the film itself plus views the training augmentation
also produces: centred zoom-ins, small shifts, or stretches along one axis ("aspect": 85 % and
70 % of the height or of the width kept). It chooses the threshold on validation exactly as the
evaluate step does, and prints validation AUC, test metrics and the inference cost of each
variant. With --blind it prints validation figures only, per model and variant: AUC, the
aspect-jittered AUC (as evaluate records it) and the largest shortcut probe, each scored
through the variant's views, so a rule can be decided before any test figure is read.
Needs `cxr ingest` (manifest) and the decoded-array cache of that run.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

VARIANTS = ("none", "zoom", "shift", "zoom+shift", "aspect")


def views(x: np.ndarray, variant: str) -> list[np.ndarray]:
    """The augmented copies of a (n, s, s, 1) uint8 batch that one TTA variant averages over."""
    from cxr_model.probes import centre_crop

    if variant not in VARIANTS:
        raise ValueError(f"unknown TTA variant {variant!r}: one of {', '.join(VARIANTS)}")
    size = x.shape[1]
    out = [x]
    if variant in ("zoom", "zoom+shift"):
        out += [centre_crop(x, crop) for crop in (0.9, 0.8)]
    if variant in ("shift", "zoom+shift"):
        step = max(1, size // 32)
        for dy, dx in ((step, 0), (-step, 0), (0, step), (0, -step)):
            out.append(np.roll(x, (dy, dx), axis=(1, 2)))
    if variant == "aspect":  # stretched taller (height cropped), then wider (width cropped)
        out += [centre_crop(x, keep, 1.0) for keep in (0.85, 0.7)]
        out += [centre_crop(x, 1.0, keep) for keep in (0.85, 0.7)]
    return out


def averaged(predict: Callable[[np.ndarray], np.ndarray], variant: str) -> Callable[[np.ndarray], np.ndarray]:
    """A predict function scoring each film as the mean over the variant's views."""
    return lambda x: np.mean([predict(v) for v in views(x, variant)], axis=0)


def validation_figures(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray) -> dict:
    """What a blind rule reads: validation AUC, the aspect-jittered AUC and the largest probe."""
    from cxr_model.evaluation import ranking_metrics
    from cxr_model.probes import aspect_jittered_auc, largest_ratio, normal_ratios, run_probes

    p = predict(x)
    name, ratio = largest_ratio(normal_ratios(run_probes(predict, x, y, p)))
    return {"auc": ranking_metrics(y, p)["auc"], "jittered": aspect_jittered_auc(predict, x, y),
            "probe": name, "ratio": ratio}


def _options(parser) -> None:
    parser.add_argument("--variant", nargs="+", choices=VARIANTS, default=list(VARIANTS),
                        help="the variants to score (\"none\" is always scored first)")
    parser.add_argument("--blind", action="store_true", help="validation figures only; no test figure")


def main(argv: list[str] | None = None) -> int:
    from benchmarks.saved_model import chosen_threshold_figures, load, test_cells
    from cxr_model import training

    cfg, models, arrays, args = load(__doc__, argv, several=True, options=_options)
    val, test = arrays["val"], arrays["test"]
    variants = ["none"] + [v for v in args.variant if v != "none"]
    if args.blind:
        print("| model | variant | views | val AUC | aspect-jittered val AUC | largest probe |")
        print("| --- | --- | --- | --- | --- | --- |")
    else:
        print("| model | variant | views | val AUC | test AUC | threshold | test acc | sens | spec | acc @0.5 | ms/image |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for path, model in zip(args.model, models):
        for variant in variants:
            predict = averaged(lambda x, m=model: training.predict(m, x), variant)
            n_views = len(views(val.x[:1], variant))
            if args.blind:
                f = validation_figures(predict, val.x, val.y)
                print(f"| {path} | {variant} | {n_views} | {f['auc']:.5f} | {f['jittered']:.5f} "
                      f"| {f['ratio']:.2f} ({f['probe']}) |", flush=True)
                continue
            start = time.perf_counter()
            p_val, p_test = predict(val.x), predict(test.x)
            ms = 1000 * (time.perf_counter() - start) / (len(val) + len(test))
            f = chosen_threshold_figures(cfg, val, p_val, test, p_test)
            print(f"| {path} | {variant} | {n_views} | {f['val_auc']:.4f} {test_cells(f)} {ms:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
