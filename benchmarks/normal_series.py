"""Where the specificity goes: the NORMAL films by file-name series (`IM-…` and `NORMAL2-IM-…`),
on validation and test, for saved models, each at the threshold chosen on validation as the
evaluate step does; and how the NORMAL films' scores follow their JPEG size (less fine detail,
a smaller file). An analysis (results.md, "Where the specificity goes"), never a selection rule.

    python -m benchmarks.normal_series --model artifacts/experiments/AS1/train/model.keras \\
        artifacts/experiments/AS1-S43/train/model.keras ...
    python -m benchmarks.normal_series --spectrum    # no model: each group's share of energy by band

With --spectrum it prints, per pool (training and validation films, or test) and group (the two
NORMAL series and PNEUMONIA), the mean share of each film's spectral energy in bands of spatial
frequency (cycles per film), on up to 150 source films per group, each standardised first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

SERIES = ("IM", "NORMAL2")
BANDS = ((0, 8), (8, 16), (16, 32), (32, 56), (56, 80), (80, 112))  # cycles per film


def series(path: str) -> str:
    """The NORMAL file-name series a film belongs to."""
    return "NORMAL2" if Path(path).name.startswith("NORMAL2-") else "IM"


def series_figures(paths: list[str], y: np.ndarray, p: np.ndarray, threshold: float,
                   sizes: np.ndarray) -> dict:
    """Films and specificity per NORMAL series, and Spearman's rho between the NORMAL films'
    scores and their file sizes (negative: the smoother films score higher)."""
    y, p, sizes = np.asarray(y), np.asarray(p, dtype=float), np.asarray(sizes, dtype=float)
    normal = y == 0
    names = np.array([series(path) for path in paths])
    out = {}
    for name in SERIES:
        chosen = normal & (names == name)
        out[name] = {"films": int(chosen.sum()),
                     "specificity": float((p[chosen] < threshold).mean()) if chosen.any() else float("nan")}
    out["rho_score_bytes"] = float(spearmanr(p[normal], sizes[normal]).statistic) if normal.sum() > 2 else float("nan")
    return out


def band_shares(film: np.ndarray, bands: tuple = BANDS) -> np.ndarray:
    """Each band's share of a film's spectral energy (film_stats.band_shares, for one film of any
    size): fine detail lives in the high bands, and a smoother film has less there."""
    from cxr_model.film_stats import band_shares as shares

    return shares(np.asarray(film)[None], bands)[0]


def spectrum(argv: list[str]) -> int:
    """The --spectrum table (source films, no model)."""
    import argparse

    from cxr_model.config import load_config
    from cxr_model.data import read_manifest
    from cxr_model.images import decode

    parser = argparse.ArgumentParser()
    parser.add_argument("--spectrum", action="store_true")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--films", type=int, default=150, help="films per group (a seeded sample)")
    args = parser.parse_args(argv)
    cfg = load_config(args.params)
    m = read_manifest(cfg.layout.manifest)
    m = m[m["error"] == ""]
    m = m.assign(pool=np.where(m["split"] == "test", "test", "train+val"),
                 group=[label if label != "NORMAL" else series(path) for label, path in zip(m["label"], m["path"])])
    print("| pool | group | films | " + " | ".join(f"{lo}-{hi}" for lo, hi in BANDS) + " |")
    print("| --- | --- | --- |" + " --- |" * len(BANDS))
    for (pool, group), rows in m.groupby(["pool", "group"]):
        rows = rows.sample(min(len(rows), args.films), random_state=0)
        shares = np.mean([band_shares(decode((cfg.data_source / path).read_bytes(), cfg.data.max_image_pixels).gray)
                          for path in rows["path"]], axis=0)
        print(f"| {pool} | {group} | {len(rows)} | " + " | ".join(f"{v:.2e}" for v in shares) + " |")
    return 0


def main(argv: list[str] | None = None) -> int:
    import sys

    from benchmarks.saved_model import chosen_threshold_figures, load
    from cxr_model import training
    from cxr_model.data import read_manifest

    argv = sys.argv[1:] if argv is None else argv
    if "--spectrum" in argv:
        return spectrum(argv)
    cfg, models, arrays, _ = load(__doc__, argv, several=True)
    sizes = read_manifest(cfg.layout.manifest).set_index("path")["bytes"]
    print("| model | split | threshold | IM films | IM specificity | NORMAL2 films | NORMAL2 specificity "
          "| rho(score, bytes), NORMAL films |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for i, model in enumerate(models):
        p = {split: training.predict(model, arrays[split].x) for split in ("val", "test")}
        t = chosen_threshold_figures(cfg, arrays["val"], p["val"], arrays["test"], p["test"])["threshold"]
        for split in ("val", "test"):
            a = arrays[split]
            f = series_figures(a.paths, a.y, p[split], t, sizes.loc[a.paths].to_numpy())
            print(f"| {i + 1} | {split} | {t:.3f} | {f['IM']['films']} | {f['IM']['specificity']:.3f} "
                  f"| {f['NORMAL2']['films']} | {f['NORMAL2']['specificity']:.3f} | {f['rho_score_bytes']:+.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
