"""Shortcut probes for any saved model, on the validation split only (the evaluate step runs
the same probes on the model it evaluates: `val_probes` in metrics.json and MLflow).

    python -m benchmarks.probes                                   # artifacts/train/model.keras
    python -m benchmarks.probes --model artifacts/experiments/R6/train/model.keras

Prints, per probe (cxr_model/probes.py: framing, exposure, sharpness, corner markers), the
validation AUC and the mean pneumonia probability of the NORMAL and PNEUMONIA films. A model
that reads the film, not how a site takes it, keeps them flat. Uses no test image. Needs
`cxr ingest` (manifest) and the decoded-array cache of that run.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    from benchmarks.saved_model import load
    from cxr_model import training
    from cxr_model.probes import PROBES, run_probes

    _, model, arrays, _ = load(__doc__, argv)
    val = arrays["val"]
    print(f"{int((val.y == 0).sum())} of the validation films are NORMAL")
    print("| probe | val AUC | NORMAL mean p | × unchanged | PNEUMONIA mean p |")
    print("| --- | --- | --- | --- | --- |")
    for name, r in run_probes(lambda x: training.predict(model, x), val.x, val.y).items():
        label = PROBES[name][0] if name in PROBES else "unchanged"
        print(f"| {label} | {r['auc']:.4f} | {r['normal_mean_p']:.3f} | {r['normal_ratio']:.1f} "
              f"| {r['pneumonia_mean_p']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
