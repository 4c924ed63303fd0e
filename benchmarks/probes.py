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

import argparse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="artifacts/train/model.keras")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)

    from cxr_model import training
    from cxr_model.config import load_config
    from cxr_model.model import keras
    from cxr_model.probes import PROBES, run_probes
    from cxr_model.steps import _arrays

    cfg = load_config(args.params)
    val = _arrays(cfg)["val"]
    model = keras.models.load_model(args.model, compile=False)
    print(f"{args.model}: {len(val)} validation films ({int((val.y == 0).sum())} NORMAL)")
    print("| probe | val AUC | NORMAL mean p | × unchanged | PNEUMONIA mean p |")
    print("| --- | --- | --- | --- | --- |")
    for name, r in run_probes(lambda x: training.predict(model, x), val.x, val.y).items():
        label = PROBES[name][0] if name in PROBES else "unchanged"
        print(f"| {label} | {r['auc']:.4f} | {r['normal_mean_p']:.3f} | {r['normal_ratio']:.1f} "
              f"| {r['pneumonia_mean_p']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
