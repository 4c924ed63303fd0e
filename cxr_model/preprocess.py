"""Decode the manifest's images once into a cached uint8 array, keyed by content and size."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_model.data import LABELS, manifest_fingerprint
from cxr_model.errors import DataError
from cxr_model.images import ImageError, load_for_model

log = logging.getLogger("cxr.preprocess")

# Bump when load_for_model changes what it produces, so stale caches are never reused.
PREPROCESS_VERSION = 1


@dataclass(frozen=True)
class Arrays:
    """Decoded images of one split: x is (n, size, size, 1) uint8, y is 0 NORMAL / 1 PNEUMONIA."""

    x: np.ndarray
    y: np.ndarray
    paths: list[str]

    def __len__(self) -> int:
        return len(self.y)


def cache_path(cache_dir: Path, manifest: pd.DataFrame, size: int) -> Path:
    key = hashlib.sha256(
        f"{manifest_fingerprint(manifest)}:{size}:{PREPROCESS_VERSION}".encode()
    ).hexdigest()[:16]
    return cache_dir / f"arrays-{size}px-{key}.npz"


def decode_all(source: Path, paths: list[str], size: int, max_pixels: int) -> np.ndarray:
    """Decode files in parallel threads (Pillow releases the GIL), logging progress."""
    out = np.empty((len(paths), size, size), dtype=np.uint8)
    step = max(1, len(paths) // 10)

    def one(i: int) -> None:
        try:
            out[i] = load_for_model(source / paths[i], size, max_pixels)
        except (ImageError, OSError) as exc:
            raise DataError(f"cannot use image {source / paths[i]}: {exc}") from None

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        for n, _ in enumerate(pool.map(one, range(len(paths))), start=1):
            if n % step == 0 or n == len(paths):
                log.info("preprocess: decoded %d/%d images", n, len(paths))
    return out


def decoded_pixels(
    manifest: pd.DataFrame, source: Path, size: int, max_pixels: int, cache_dir: Path
) -> np.ndarray:
    """All of the manifest's images as (n, size, size) uint8, decoded once and cached."""
    bad = manifest[manifest["error"] != ""]
    if len(bad):
        raise DataError(f"unreadable image {source / bad.iloc[0]['path']}: {bad.iloc[0]['error']}")
    path = cache_path(cache_dir, manifest, size)
    if path.is_file():
        with np.load(path) as cached:
            log.info("preprocess: reused cached arrays %s", path.name)
            return cached["x"]
    start = time.perf_counter()
    x = decode_all(source, manifest["path"].tolist(), size, max_pixels)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")  # parallel sweep trials
    np.savez(tmp, x=x)
    tmp.replace(path)
    log.info("preprocess: decoded %d images in %.1f s -> %s", len(x), time.perf_counter() - start, path.name)
    return x


def load_arrays(
    manifest: pd.DataFrame, source: Path, size: int, max_pixels: int, cache_dir: Path
) -> dict[str, Arrays]:
    """Arrays per split, decoding only when no cache for this exact manifest and size exists."""
    x = decoded_pixels(manifest, source, size, max_pixels, cache_dir)
    paths = manifest["path"].tolist()
    y = (manifest["label"] == LABELS[1]).to_numpy(dtype=np.int32)
    result = {}
    for split in ("train", "val", "test"):
        mask = (manifest["split"] == split).to_numpy()
        result[split] = Arrays(x[mask][..., None], y[mask], [p for p, m in zip(paths, mask) if m])
    return result
