"""Near-copies across splits: a film re-exported (another JPEG quality, size or gamma) has a new
sha256, so the exact-duplicate rule misses it, and a copy of a test film in train inflates the
test metrics. Compared on mean-centred, unit-length thumbnails (Pearson correlation)."""

from __future__ import annotations

import numpy as np

THUMBNAIL = 64  # px per side at most: fine enough to tell films apart, coarse enough for JPEG noise


def block_mean(pixels: np.ndarray, most: int) -> np.ndarray:
    """(n, size, size) films averaged over square blocks down to at most `most` px per side
    (a whole factor of size, so no pixel is dropped or interpolated)."""
    n, size = len(pixels), pixels.shape[1]
    factor = max(1, size // most)
    while size % factor:
        factor -= 1
    side = size // factor
    return pixels.reshape(n, side, factor, side, factor).astype(np.float32).mean(axis=(2, 4))


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Flattened rows of zero mean and unit length: their dot products are Pearson correlations
    (a flat row stays zero)."""
    x = x.reshape(len(x), -1).astype(np.float32)
    x = x - x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def thumbnails(pixels: np.ndarray) -> np.ndarray:
    """(n, side*side) rows of zero mean and unit length, block-averaged down to THUMBNAIL px."""
    return unit_rows(block_mean(pixels, THUMBNAIL))


def nearest_in_other_splits(pixels: np.ndarray, splits: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """For each film: the highest correlation with a film of another split, and that film's index
    (-1 when no other split has films). Blank films correlate with nothing (0)."""
    x, splits = thumbnails(pixels), np.asarray(splits)
    best = np.zeros(len(x), dtype=np.float32)
    where = np.full(len(x), -1)
    for start in range(0, len(x), chunk):
        sim = x[start:start + chunk] @ x.T
        sim[splits[start:start + chunk, None] == splits[None, :]] = -np.inf
        where[start:start + chunk] = np.argmax(sim, axis=1)
        best[start:start + chunk] = sim[np.arange(len(sim)), where[start:start + chunk]]
    alone = ~np.isfinite(best)
    best[alone], where[alone] = 0.0, -1
    return best, where
