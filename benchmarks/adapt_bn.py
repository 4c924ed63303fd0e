"""Does re-estimating batch-norm statistics on a cohort's own unlabelled films (AdaBN) help a
model on films from another site? The AB1 rule in results.md decides it on validation only.

    python -m benchmarks.adapt_bn                                   # artifacts/train/model.keras
    python -m benchmarks.adapt_bn --model artifacts/experiments/HR1/train/model.keras

Prints, on the validation split: the unchanged films adapted to themselves; adaptation to
subsets with another class mix; and every shortcut probe's change as a simulated site, scored
with and without adaptation to the changed films. Then the test split with and without
adaptation to the test films (labels unused; no part in any decision). Needs `cxr ingest`
(manifest) and the decoded-array cache of that run.
"""

from __future__ import annotations

import time

import numpy as np


def adapt_batchnorm(model, x: np.ndarray, batch_size: int = 64):
    """A copy of `model` whose batch-norm layers normalise with the statistics of the films `x`,
    computed exactly, layer by layer in order, each with the layers before it already adapted."""
    from cxr_model.model import ensemble_members, keras

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    x = x.astype(np.float32)
    for member in ensemble_members(clone):
        for layer in member.layers:
            if not isinstance(layer, keras.layers.BatchNormalization):
                continue
            features = keras.Model(member.input, layer.input)
            total = total_sq = 0.0
            count = 0
            for i in range(0, len(x), batch_size):
                f = np.asarray(features(x[i:i + batch_size], training=False), dtype=np.float64)
                f = f.reshape(-1, f.shape[-1])
                total = total + f.sum(axis=0)
                total_sq = total_sq + np.square(f).sum(axis=0)
                count += len(f)
            mean = total / count
            layer.moving_mean.assign(mean.astype(np.float32))
            layer.moving_variance.assign(np.maximum(total_sq / count - mean ** 2, 0.0).astype(np.float32))
    return clone


def _mix_subset(y: np.ndarray, share: float, seed: int = 0) -> np.ndarray:
    """Indices of the largest subset of y with this share of PNEUMONIA (label 1) films."""
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    n_pos = min(len(pos), int(len(neg) * share / (1 - share)))
    n_neg = min(len(neg), int(n_pos * (1 - share) / share))
    return np.sort(np.concatenate([rng.choice(pos, n_pos, replace=False), rng.choice(neg, n_neg, replace=False)]))


def main(argv: list[str] | None = None) -> int:
    from sklearn.metrics import roc_auc_score

    from benchmarks.saved_model import chosen_threshold_figures, load
    from cxr_model import training
    from cxr_model.probes import PROBES

    cfg, model, arrays, _ = load(__doc__, argv)
    val, test = arrays["val"], arrays["test"]
    score = training.predict
    p0 = score(model, val.x)
    base = float(p0[val.y == 0].mean())
    auc0 = roc_auc_score(val.y, p0)

    start = time.perf_counter()
    adapted = adapt_batchnorm(model, val.x)
    print(f"adaptation to {len(val)} films: {time.perf_counter() - start:.1f} s")
    p = score(adapted, val.x)
    print(f"(u) unchanged: AUC {auc0:.4f} -> {roc_auc_score(val.y, p):.4f}; "
          f"NORMAL mean p {base:.3f} -> {p[val.y == 0].mean():.3f}")

    print(f"(m) class mix (validation is {val.y.mean():.0%} PNEUMONIA)")
    for share in (0.25, 0.90):
        idx = _mix_subset(val.y, share)
        p = score(adapt_batchnorm(model, val.x[idx]), val.x)
        print(f"    adapted to {len(idx)} films, {share:.0%} PNEUMONIA: AUC {auc0:.4f} -> "
              f"{roc_auc_score(val.y, p):.4f}; NORMAL mean p x{p[val.y == 0].mean() / base:.2f}")

    print("(s) simulated sites")
    print("| probe | AUC | AUC adapted | NORMAL ratio | NORMAL ratio adapted |")
    print("| --- | --- | --- | --- | --- |")
    gains, logs, logs_adapted = [], [], []
    for name, (label, change) in PROBES.items():
        xs = change(val.x)
        p, pa = score(model, xs), score(adapt_batchnorm(model, xs), xs)
        r, ra = p[val.y == 0].mean() / base, pa[val.y == 0].mean() / base
        auc, auca = roc_auc_score(val.y, p), roc_auc_score(val.y, pa)
        gains.append(auca - auc)
        logs.append(abs(np.log(r)))
        logs_adapted.append(abs(np.log(ra)))
        print(f"| {label} | {auc:.4f} | {auca:.4f} | {r:.2f} | {ra:.2f} |")
    print(f"mean AUC change {np.mean(gains):+.5f}; mean |log NORMAL ratio| {np.mean(logs):.3f} -> "
          f"{np.mean(logs_adapted):.3f}")

    print("test split (adapted to the test films, labels unused; no part in any decision)")
    adapted_test = adapt_batchnorm(model, test.x)
    for label, m in (("as trained", model), ("adapted", adapted_test)):
        f = chosen_threshold_figures(cfg, val, p0, test, score(m, test.x))
        print(f"    {label}: AUC {f['auc']:.4f}, at {f['threshold']:.3f} accuracy {f['accuracy']:.4f}, "
              f"sensitivity {f['sensitivity']:.4f}, specificity {f['specificity']:.4f}; "
              f"at 0.5 accuracy {f['accuracy_at_0_5']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
