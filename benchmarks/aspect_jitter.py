"""How much of a saved model's validation AUC rests on the squash? (AS3 in results.md.)

    python -m benchmarks.aspect_jitter --model artifacts/experiments/AS1/train/model.keras \\
        artifacts/experiments/AS1-S43/train/model.keras

Prints, per model, validation figures only: the AUC as the films are, the aspect-jittered AUC
(each film stretched along a random axis by up to 30 %, mean over four draws, as the evaluate
step records it) and the drop between them. The test split is not scored, so a selection rule
can read this before any test figure. Needs `cxr ingest` and the decoded-array cache.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    from benchmarks.saved_model import load
    from cxr_model import training
    from cxr_model.evaluation import ranking_metrics
    from cxr_model.probes import aspect_jittered_auc

    _, models, arrays, _ = load(__doc__, argv, several=True)
    val = arrays["val"]
    print("| model | val AUC | aspect-jittered val AUC | drop |")
    print("| --- | --- | --- | --- |")
    for i, model in enumerate(models):
        plain = ranking_metrics(val.y, training.predict(model, val.x))["auc"]
        jittered = aspect_jittered_auc(lambda x: training.predict(model, x), val.x, val.y)
        print(f"| {i + 1} | {plain:.5f} | {jittered:.5f} | {plain - jittered:.5f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
