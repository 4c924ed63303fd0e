"""Cheap checks that an input could be a frontal chest X-ray before the model scores it.

The CNN outputs a confident probability for anything it is given, a holiday photo included, so
inputs that are clearly not radiographs are refused with a reason instead. These are
heuristics (size, shape, colour, intensity spread), not an out-of-distribution detector: a
lateral or adult film passes them, and the model card says so.
"""

from __future__ import annotations

import numpy as np

from cxr_model.config import PredictConfig
from cxr_model.images import Decoded


def implausibility(decoded: Decoded, cfg: PredictConfig) -> str | None:
    """The reason this image is not a plausible frontal chest X-ray, or None if it may be one."""
    gray = decoded.gray
    h, w = gray.shape
    if min(h, w) < cfg.min_side:
        return f"image too small ({w}x{h} px; at least {cfg.min_side} px per side expected)"
    aspect = max(h, w) / min(h, w)
    if aspect > cfg.max_aspect_ratio:
        return f"aspect ratio {aspect:.2f} is not that of a chest film (at most {cfg.max_aspect_ratio})"
    if decoded.colourfulness > cfg.max_colourfulness:
        return (f"colour image (colourfulness {decoded.colourfulness:.0f} > {cfg.max_colourfulness:.0f}); "
                "radiographs are grayscale")
    sample = gray[:: max(1, h // 256), :: max(1, w // 256)]
    lo, hi = np.percentile(sample, [1, 99])
    if hi - lo < cfg.min_contrast:
        return f"blank or nearly uniform image (1-99 % intensity spread {hi - lo:.0f} < {cfg.min_contrast:.0f})"
    mean = float(sample.mean())
    if not cfg.mean_intensity[0] <= mean <= cfg.mean_intensity[1]:
        return (f"mean intensity {mean:.0f} outside {cfg.mean_intensity[0]:.0f}-{cfg.mean_intensity[1]:.0f} "
                "seen on chest X-rays (mostly black or mostly white image)")
    return None
