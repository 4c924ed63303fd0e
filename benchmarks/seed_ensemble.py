"""What does averaging independently trained full-length models give? (SE1, SE2 in results.md.)

    python -m benchmarks.seed_ensemble --sizes 1 2 3 7 --model artifacts/experiments/AS1/train/model.keras \\
        artifacts/experiments/AS1-S4{3..8}/train/model.keras

Scores every saved model on the validation split (as it is and aspect-jittered, as evaluate
does) and the test split once, then averages the probabilities of every subset of two or more,
choosing each threshold on validation as the evaluate step does. Prints one row per subset of
the `--sizes` asked for (all by default), then per size the mean over every subset of that
size, and the averages of the first k models in the order given (with models given in seed
order, what `model.ensemble: k` trains). Needs `cxr ingest` and the decoded-array cache.
"""

from __future__ import annotations

import argparse
from itertools import combinations

import numpy as np

COLUMNS = ("val_auc", "jittered", "viral", "auc", "threshold", "accuracy", "sensitivity", "specificity",
           "accuracy_at_0_5")


def averages(probabilities: list[np.ndarray]) -> dict[tuple[int, ...], np.ndarray]:
    """Every single member and the mean probability of every subset of two or more, by indices."""
    n = len(probabilities)
    return {subset: np.mean([probabilities[i] for i in subset], axis=0)
            for size in range(1, n + 1) for subset in combinations(range(n), size)}


def jittered_aucs(y: np.ndarray, views_by_model: list[list[np.ndarray]]) -> dict[tuple[int, ...], float]:
    """Each subset's aspect-jittered AUC: per jittered view, the AUC of the members' mean score on
    it, then the mean over views (what `probes.aspect_jittered_auc` gives the averaged model)."""
    from sklearn.metrics import roc_auc_score

    per_view = [averages([views[v] for views in views_by_model]) for v in range(len(views_by_model[0]))]
    return {subset: float(np.mean([roc_auc_score(y, view[subset]) for view in per_view])) for subset in per_view[0]}


def size_means(rows: dict[tuple[int, ...], dict[str, float]]) -> dict[int, dict[str, float]]:
    """Per subset size, the mean of every column over the subsets of that size."""
    sizes = sorted({len(s) for s in rows})
    return {k: {c: float(np.mean([r[c] for s, r in rows.items() if len(s) == k])) for c in COLUMNS} for k in sizes}


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", nargs="+", type=int, help="subset sizes to print row by row (default: all)")


def _cells(label: str, r: dict[str, float]) -> str:
    from benchmarks.saved_model import test_cells

    return f"| {label} | {r['val_auc']:.5f} | {r['jittered']:.5f} | {r['viral']:.4f} {test_cells(r)}"


def main(argv: list[str] | None = None) -> int:
    from benchmarks.saved_model import chosen_threshold_figures, load
    from cxr_model import training
    from cxr_model.data import pneumonia_type
    from cxr_model.evaluation import by_group
    from cxr_model.probes import aspect_jittered_views

    cfg, models, arrays, args = load(__doc__, argv, several=True, options=_options)
    val, test = arrays["val"], arrays["test"]
    p_val = averages([training.predict(m, val.x) for m in models])
    p_test = averages([training.predict(m, test.x) for m in models])
    views = aspect_jittered_views(val.x)
    jittered = jittered_aucs(val.y, [[training.predict(m, v) for v in views] for m in models])
    types = np.array([pneumonia_type(path) for path in val.paths])
    rows = {}
    for subset, pv in p_val.items():
        f = chosen_threshold_figures(cfg, val, pv, test, p_test[subset])
        rows[subset] = {**f, "jittered": jittered[subset],
                        "viral": by_group(val.y, pv, types, f["threshold"])["virus"]["auc"]}
    print("| members | val AUC | jittered val AUC | val AUC viral | test AUC | threshold | test acc | sens | spec "
          "| acc @0.5 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for subset, r in rows.items():
        if not args.sizes or len(subset) in args.sizes:
            print(_cells(" + ".join(str(i + 1) for i in subset), r))
    for k, r in size_means(rows).items():
        print(_cells(f"mean of the {sum(len(s) == k for s in rows)} subsets of {k}", r))
    for k in range(2, len(models) + 1):
        print(_cells(f"first {k}", rows[tuple(range(k))]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
