"""Shortcut probes on the validation split only: does a model's score for the same films move
when nothing but their framing or their exposure changes?

    python -m benchmarks.probes                                   # artifacts/train/model.keras
    python -m benchmarks.probes --model artifacts/experiments/R6/train/model.keras

Framing: centred 90 % and 80 % crops (tighter framing, as in other cohorts' films). Exposure:
gamma curves 0.67 and 1.5 and a contrast squeeze to the middle 60 % of the grey range (other
scanners' exposure and processing). Sharpness: a 1-px Gaussian blur and an unsharp mask.
Markers: the four corners, where side markers and text sit, blacked out. A model that reads the film, not the framing or the
scanner, keeps its validation AUC and its mean pneumonia probability for NORMAL films flat.
Uses no test image. Needs `cxr ingest` (manifest) and the decoded-array cache of that run.
"""

from __future__ import annotations

import argparse

import numpy as np


def centre_crop(x: np.ndarray, crop: float) -> np.ndarray:
    """Centred crop keeping `crop` of each side, resized back: a (n, s, s, 1) uint8 batch zoomed in."""
    import tensorflow as tf

    size = x.shape[1]
    lo, hi = (1 - crop) / 2, 1 - (1 - crop) / 2
    boxes = np.tile([[lo, lo, hi, hi]], (len(x), 1)).astype(np.float32)
    zoomed = tf.image.crop_and_resize(x.astype(np.float32), boxes, np.arange(len(x)), (size, size))
    return np.clip(np.round(zoomed.numpy()), 0, 255).astype(np.uint8)


def exposed(x: np.ndarray, gamma: float = 1.0, squeeze: float = 1.0) -> np.ndarray:
    """The same films through another exposure curve, quantised to 8 bits as a scanner would."""
    y = 255.0 * (x.astype(np.float32) / 255.0) ** gamma
    y = 127.5 + (y - 127.5) * squeeze
    return np.clip(np.round(y), 0, 255).astype(np.uint8)


def blurred(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur (sigma in pixels): a softer detector or a lower native resolution."""
    from scipy.ndimage import gaussian_filter

    y = gaussian_filter(x.astype(np.float32), sigma=(0, sigma, sigma, 0))
    return np.clip(np.round(y), 0, 255).astype(np.uint8)


def sharpened(x: np.ndarray, amount: float = 1.0) -> np.ndarray:
    """Unsharp mask: a harder reconstruction kernel, as some scanners apply."""
    soft = blurred(x, 1.0).astype(np.float32)
    y = x.astype(np.float32) + amount * (x.astype(np.float32) - soft)
    return np.clip(np.round(y), 0, 255).astype(np.uint8)


def corners_masked(x: np.ndarray, share: float = 0.2) -> np.ndarray:
    """The four corners (where side markers and text sit) blacked out, as the augmentation's
    shifts and rotations also leave black borders."""
    y = x.copy()
    k = int(round(x.shape[1] * share))
    for rows in (slice(0, k), slice(-k, None)):
        for cols in (slice(0, k), slice(-k, None)):
            y[:, rows, cols] = 0
    return y


PROBES = {
    "as is": lambda x: x,
    "crop 90 %": lambda x: centre_crop(x, 0.9),
    "crop 80 %": lambda x: centre_crop(x, 0.8),
    "gamma 0.67": lambda x: exposed(x, gamma=0.67),
    "gamma 1.5": lambda x: exposed(x, gamma=1.5),
    "contrast 60 %": lambda x: exposed(x, squeeze=0.6),
    "blur σ 1 px": lambda x: blurred(x, 1.0),
    "sharpen": sharpened,
    "corners masked": corners_masked,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="artifacts/train/model.keras")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)

    from sklearn.metrics import roc_auc_score

    from cxr_model import training
    from cxr_model.config import load_config
    from cxr_model.model import keras
    from cxr_model.steps import _arrays

    cfg = load_config(args.params)
    val = _arrays(cfg)["val"]
    model = keras.models.load_model(args.model, compile=False)
    print(f"{args.model}: {len(val)} validation films ({int((val.y == 0).sum())} NORMAL)")
    print("| probe | val AUC | NORMAL mean p | PNEUMONIA mean p |")
    print("| --- | --- | --- | --- |")
    for name, change in PROBES.items():
        p = training.predict(model, change(val.x))
        print(f"| {name} | {roc_auc_score(val.y, p):.4f} | {p[val.y == 0].mean():.3f} "
              f"| {p[val.y == 1].mean():.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
