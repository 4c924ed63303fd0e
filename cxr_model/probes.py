"""Shortcut probes: does the model's score for the same validation films move when nothing but
their framing, aspect, exposure, sharpness, corner markers, tilt, noise, resolution or compression
changes? A model that reads the lungs stays flat; one that leans on how a site takes its films
does not, and would fail on another site."""

from __future__ import annotations

from typing import Callable

import numpy as np
from sklearn.metrics import roc_auc_score


def centre_crop(x: np.ndarray, crop: float, crop_width: float | None = None) -> np.ndarray:
    """Centred crop keeping `crop` of the height and `crop_width` (default: the same) of the
    width, resized back: a (n, s, s, 1) uint8 batch zoomed in, stretched if the two differ."""
    keep_h = np.full(len(x), crop, np.float32)
    keep_w = keep_h if crop_width is None else np.full(len(x), crop_width, np.float32)
    return _cropped(x, keep_h, keep_w)


def aspect_jittered(x: np.ndarray, max_share: float, seed: int) -> np.ndarray:
    """Each film stretched along a random axis, keeping 1 - |s| of that side (s uniform in
    +-max_share, a fixed draw): the squash scrambled, as films from another hospital arrive."""
    s = np.random.default_rng(seed).uniform(-max_share, max_share, len(x)).astype(np.float32)
    return _cropped(x, 1.0 - np.maximum(s, 0.0), 1.0 + np.minimum(s, 0.0))


def aspect_jittered_views(x: np.ndarray, max_share: float = 0.3, draws: int = 4) -> list[np.ndarray]:
    """The fixed aspect-jittered copies (seeds 0, 1, ...) the jittered AUC is the mean over, for
    scoring several models on the same ones."""
    return [aspect_jittered(x, max_share, seed) for seed in range(draws)]


def aspect_jittered_auc(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    """Mean AUC over the aspect-jittered copies: validation AUC with the squash cue, which the
    validation films share with training, scrambled (results.md AS3)."""
    return float(np.mean([roc_auc_score(y, predict(view)) for view in aspect_jittered_views(x)]))


def _cropped(x: np.ndarray, keep_h: np.ndarray, keep_w: np.ndarray) -> np.ndarray:
    """Per film, the centred crop keeping those shares of the height and width, resized back."""
    import tensorflow as tf

    from cxr_model.augmentation import centred_crop_boxes

    n, size = len(x), x.shape[1]
    boxes = centred_crop_boxes(keep_h, keep_w)
    zoomed = tf.image.crop_and_resize(x.astype(np.float32), boxes, np.arange(n), (size, size))
    return _to_uint8(zoomed.numpy())


def exposed(x: np.ndarray, gamma: float = 1.0, squeeze: float = 1.0) -> np.ndarray:
    """The same films through another exposure curve, quantised to 8 bits as a scanner would."""
    y = 255.0 * (x.astype(np.float32) / 255.0) ** gamma
    return _to_uint8(127.5 + (y - 127.5) * squeeze)


def blurred(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur (sigma in pixels): a softer detector or a lower native resolution."""
    from scipy.ndimage import gaussian_filter

    return _to_uint8(gaussian_filter(x.astype(np.float32), sigma=(0, sigma, sigma, 0)))


def sharpened(x: np.ndarray, amount: float = 1.0) -> np.ndarray:
    """Unsharp mask: a harder reconstruction kernel, as some scanners apply."""
    x32 = x.astype(np.float32)
    return _to_uint8(x32 + amount * (x32 - blurred(x, 1.0)))


def corners_masked(x: np.ndarray, share: float = 0.2) -> np.ndarray:
    """The four corners (where side markers and text sit) blacked out, like the black borders
    the augmentation's shifts and rotations leave."""
    y = x.copy()
    k = int(round(x.shape[1] * share))
    for rows in (slice(0, k), slice(-k, None)):
        for cols in (slice(0, k), slice(-k, None)):
            y[:, rows, cols] = 0
    return y


def noisy(x: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """Gaussian sensor noise (sigma on the 0-255 scale, a fixed draw): a noisier detector or dose."""
    rng = np.random.default_rng(seed)
    return _to_uint8(x.astype(np.float32) + rng.normal(0.0, sigma, x.shape))


def rotated(x: np.ndarray, degrees: float) -> np.ndarray:
    """Rotated about the centre, black where the frame uncovers: a patient positioned askew."""
    from scipy.ndimage import rotate

    return _to_uint8(rotate(x.astype(np.float32), degrees, axes=(2, 1), reshape=False, order=1,
                            mode="constant", cval=0.0))


def downsampled(x: np.ndarray, factor: int = 2) -> np.ndarray:
    """Shrunk by `factor` and enlarged back: a source stored at a lower resolution."""
    import tensorflow as tf

    size = x.shape[1]
    small = tf.image.resize(x.astype(np.float32), (size // factor, size // factor), antialias=True)
    return _to_uint8(tf.image.resize(small, (size, size)).numpy())


def jpeg_compressed(x: np.ndarray, quality: int) -> np.ndarray:
    """Re-encoded as JPEG at `quality`: another archive's lossy compression."""
    import io

    from PIL import Image

    out = np.empty_like(x)
    for i, img in enumerate(x[..., 0]):
        buf = io.BytesIO()
        Image.fromarray(img, mode="L").save(buf, format="JPEG", quality=quality)
        out[i, ..., 0] = np.asarray(Image.open(buf), dtype=np.uint8)
    return out


def _to_uint8(y: np.ndarray) -> np.ndarray:
    return np.clip(np.round(y), 0, 255).astype(np.uint8)


# name (a valid MLflow metric key) -> (what a reader sees, the change)
PROBES: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]] = {
    "crop_90": ("centre crop 90 %", lambda x: centre_crop(x, 0.9)),
    "crop_80": ("centre crop 80 %", lambda x: centre_crop(x, 0.8)),
    # The sources were squashed to squares from films of many shapes, so how much a film is
    # squashed can itself tell the classes apart; these stretch one side by 1/0.85.
    "taller_85": ("stretched vertically (85 % of the height kept)", lambda x: centre_crop(x, 0.85, 1.0)),
    "wider_85": ("stretched horizontally (85 % of the width kept)", lambda x: centre_crop(x, 1.0, 0.85)),
    "gamma_0_67": ("gamma 0.67", lambda x: exposed(x, gamma=0.67)),
    "gamma_1_5": ("gamma 1.5", lambda x: exposed(x, gamma=1.5)),
    "contrast_60": ("contrast squeezed to 60 %", lambda x: exposed(x, squeeze=0.6)),
    "blur_1px": ("Gaussian blur, 1 px", lambda x: blurred(x, 1.0)),
    "sharpen": ("unsharp mask", sharpened),
    "corners_masked": ("corners blacked out", corners_masked),
    "rotate_10": ("rotated 10°", lambda x: rotated(x, 10.0)),
    "noise_10": ("sensor noise σ 10", lambda x: noisy(x, 10.0)),
    "half_res": ("half resolution", downsampled),
    "jpeg_30": ("JPEG quality 30", lambda x: jpeg_compressed(x, 30)),
}


def run_probes(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray,
               p: np.ndarray | None = None) -> dict[str, dict[str, float]]:
    """Per probe (and "as_is"): AUC, mean probability of the NORMAL and of the PNEUMONIA films,
    and the NORMAL mean over the unchanged films' (1.0: no shortcut). Needs both classes in y."""
    if set(np.unique(y).tolist()) != {0, 1}:
        raise ValueError("shortcut probes need NORMAL and PNEUMONIA films")
    p = predict(x) if p is None else p
    base = float(p[y == 0].mean())
    out = {"as_is": _summary(y, p, base)}
    for name, (_, change) in PROBES.items():
        out[name] = _summary(y, predict(change(x)), base)
    return out


def normal_ratios(results: dict[str, dict[str, float]]) -> dict[str, float]:
    """Each probe's NORMAL score multiple from run_probes' results (the unchanged films left out):
    what the probe rule, the promotion gate and the model card read."""
    return {name: r["normal_ratio"] for name, r in results.items() if name != "as_is"}


def largest_ratio(ratios: dict[str, float]) -> tuple[str, float] | None:
    """The probe that moved the NORMAL films most, (name, ratio), the unchanged films (`as_is`)
    left out; None when no probe was recorded: what the gates, the results table and the rules read."""
    probes = {name: ratio for name, ratio in ratios.items() if name != "as_is"}
    return max(probes.items(), key=lambda item: item[1]) if probes else None


def _summary(y: np.ndarray, p: np.ndarray, base: float) -> dict[str, float]:
    normal = float(p[y == 0].mean())
    return {"auc": float(roc_auc_score(y, p)), "normal_mean_p": normal,
            "pneumonia_mean_p": float(p[y == 1].mean()), "normal_ratio": normal / max(base, 1e-9)}
