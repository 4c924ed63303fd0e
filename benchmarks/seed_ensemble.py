"""What does averaging independently trained full-length models give? (SE1 in results.md.)

    python -m benchmarks.seed_ensemble --model artifacts/experiments/LRU2/train/model.keras \\
        artifacts/experiments/LRU2-S43/train/model.keras artifacts/experiments/LRU2-S44/train/model.keras

Scores every saved model on the validation and test splits once, then averages the
probabilities of every subset of two or more, choosing each threshold on validation as the
evaluate step does. Prints one row per member and per average: validation AUC (all and viral),
test figures at the chosen threshold and at 0.5. Needs `cxr ingest` and the decoded-array cache.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np


def averages(probabilities: list[np.ndarray]) -> dict[tuple[int, ...], np.ndarray]:
    """Every single member and the mean probability of every subset of two or more, by indices."""
    n = len(probabilities)
    return {subset: np.mean([probabilities[i] for i in subset], axis=0)
            for size in range(1, n + 1) for subset in combinations(range(n), size)}


def main(argv: list[str] | None = None) -> int:
    from benchmarks.saved_model import chosen_threshold_figures, load, test_cells
    from cxr_model import training
    from cxr_model.data import pneumonia_type
    from cxr_model.evaluation import by_group

    cfg, models, arrays, _ = load(__doc__, argv, several=True)
    val, test = arrays["val"], arrays["test"]
    p_val = averages([training.predict(m, val.x) for m in models])
    p_test = averages([training.predict(m, test.x) for m in models])
    types = np.array([pneumonia_type(path) for path in val.paths])
    print("| members | val AUC | val AUC viral | test AUC | threshold | test acc | sens | spec | acc @0.5 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for subset, pv in p_val.items():
        f = chosen_threshold_figures(cfg, val, pv, test, p_test[subset])
        viral_auc = by_group(val.y, pv, types, f["threshold"])["virus"]["auc"]
        print(f"| {' + '.join(str(i + 1) for i in subset)} | {f['val_auc']:.5f} | {viral_auc:.4f} {test_cells(f)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
