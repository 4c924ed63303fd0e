"""Could the near-copy rule tolerate shifts? Measures alignment per pair on the real films.

    python -m benchmarks.near_copies              # 128-px decode, as measured in the README
    python -m benchmarks.near_copies --size 192 --films 50

For every film: its `--candidates` most alike films in other splits by blurred 16-px
thumbnails (a shift-robust search), then the best Pearson correlation over every shift up to
`--max-shift` px of the 64-px thumbnails (`aligned_correlation`). Prints the closest distinct
pairs so aligned, then, for `--films` test films copied with a shift, a zoom or a gamma
change, how well the copy matches its original and whether the search found the original.
A rule works only if every copy scores above every distinct pair. Needs `cxr ingest`.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from cxr_model.similarity import THUMBNAIL as THUMB
from cxr_model.similarity import block_mean, unit_rows


def search_rows(x: np.ndarray) -> np.ndarray:
    """Blurred 16-px thumbnails: a small shift barely moves them."""
    from scipy.ndimage import gaussian_filter

    return unit_rows(gaussian_filter(block_mean(x, 16), sigma=(0, 1, 1)))


def aligned_correlation(a: np.ndarray, b: np.ndarray, max_shift: int) -> float:
    """Best correlation of a's centre (max_shift px trimmed per side) with any window of b."""
    from numpy.lib.stride_tricks import sliding_window_view

    inner = a.shape[0] - 2 * max_shift
    centre = unit_rows(a[None, max_shift:-max_shift or None, max_shift:-max_shift or None])[0]
    windows = unit_rows(sliding_window_view(b, (inner, inner)).reshape(-1, inner, inner))
    return float((windows @ centre).max())


def copies(film: np.ndarray) -> dict[str, np.ndarray]:
    """Re-exports a careless pipeline could make of one film (same size, 0-255)."""
    from scipy.ndimage import shift, zoom

    size = film.shape[0]
    out = {f"shift {s} px": shift(film, (s, -s / 2), order=1, mode="constant") for s in (2, 4, 8)}
    grown = zoom(film, 1.06, order=1)
    o = (grown.shape[0] - size) // 2
    out["zoom 6 %"] = grown[o:o + size, o:o + size]
    out["shift 4 px + gamma 0.8"] = 255 * (np.clip(shift(film, (4, 3), order=1), 0, 255) / 255) ** 0.8
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--size", type=int, default=128, help="decode size (a multiple of 64)")
    parser.add_argument("--max-shift", type=int, default=4, help="px of the 64-px thumbnail")
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--films", type=int, default=150, help="test films copied")
    args = parser.parse_args(argv)

    from cxr_model import preprocess
    from cxr_model.config import load_config
    from cxr_model.data import read_manifest

    cfg = load_config(args.params)
    manifest = read_manifest(cfg.layout.manifest)
    manifest = manifest[manifest["error"] == ""].reset_index(drop=True)
    x = preprocess.decoded_pixels(manifest, cfg.data_source, args.size, cfg.data.max_image_pixels,
                                  cfg.layout.cache_dir).astype(np.float32)
    split = manifest["split"].to_numpy()
    start = time.perf_counter()
    thumbs, search = block_mean(x, THUMB), search_rows(x)
    sim = search @ search.T
    sim[split[:, None] == split[None, :]] = -np.inf
    candidates = np.argsort(-sim, axis=1)[:, :args.candidates]
    best = np.array([max(aligned_correlation(thumbs[i], thumbs[j], args.max_shift) for j in candidates[i])
                     for i in range(len(x))])
    print(f"{len(x)} films, {args.size} px, {time.perf_counter() - start:.0f} s")
    print("closest distinct film in another split, aligned: quantiles 50/90/99/99.9/100 %:",
          " ".join(f"{q:.4f}" for q in np.quantile(best, [0.5, 0.9, 0.99, 0.999, 1.0])))

    elsewhere = np.flatnonzero(split != "train")  # a copy put in train is searched among these
    rows: dict[str, list[tuple[float, int]]] = {}
    for i in np.flatnonzero(split == "test")[:args.films]:
        for name, copy in copies(x[i]).items():
            probe = search_rows(copy[None])[0]
            rank = int((search[elsewhere[elsewhere != i]] @ probe > probe @ search[i]).sum())
            rows.setdefault(name, []).append(
                (aligned_correlation(block_mean(copy[None], THUMB)[0], thumbs[i], args.max_shift), rank))
    print(f"| copy ({args.size} px) | aligned correlation, worst | 5th percentile | original missed by the search |")
    print("| --- | --- | --- | --- |")
    for name, r in rows.items():
        corr, rank = np.array(r).T
        print(f"| {name} | {corr.min():.4f} | {np.quantile(corr, 0.05):.4f} | "
              f"{int((rank >= args.candidates).sum())} of {len(r)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
