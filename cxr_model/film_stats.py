"""How a cohort's films differ from the films a model was trained on, in the respects that moved
its scores: the test split's NORMAL films that the default over-calls carry less fine detail
than the training films (benchmarks/results.md, "Where the specificity goes"), and exposure was
a shortcut probe. A site reads these before trusting a specificity; the model card carries the
training films' distributions to compare with."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cxr_model.data import LABELS

STATISTICS = {
    "brightness": "mean intensity of the film as the model reads it (0-255)",
    "contrast": "standard deviation of its intensities",
    "detail": "share of its spectral energy at 16 or more cycles per film (fine detail; a smoother, "
              "blurrier or more compressed film has less)",
}
DETAIL_CYCLES = 16
PERCENTILES = np.arange(101)
# Fewer films than this say too little about a distribution to set it against the training films'
# (the 5 % critical distance would be above 0.3).
MIN_FILMS = 20


def band_shares(films: np.ndarray, bands: tuple[tuple[float, float], ...], chunk: int = 256) -> np.ndarray:
    """Per film (n, h, w), the share of its spectral energy (mean removed) in each band of spatial
    frequency [low, high) in cycles per film: fine detail lives in the high bands, and a smoother,
    blurrier or more compressed film has less there. Shape (n, len(bands))."""
    from scipy import fft

    n, h, w = films.shape
    fy = np.abs(fft.fftfreq(h) * h)[:, None]
    fx = fft.rfftfreq(w) * w
    weight = np.full(len(fx), 2.0, dtype=np.float32)  # a half spectrum: interior columns stand for two
    weight[0] = 1.0
    if w % 2 == 0:
        weight[-1] = 1.0
    radius = np.hypot(fy, fx[None, :])
    masks = np.stack([((radius >= lo) & (radius < hi)) * weight for lo, hi in bands]).astype(np.float32)
    out = np.empty((n, len(bands)))
    for start in range(0, n, chunk):
        a = films[start:start + chunk].astype(np.float32)
        power = np.abs(fft.rfft2(a - a.mean(axis=(1, 2), keepdims=True), workers=-1)) ** 2
        total = (power * weight).sum(axis=(1, 2))
        out[start:start + chunk] = np.einsum("nhw,bhw->nb", power, masks) / np.where(total > 0, total, 1.0)[:, None]
    return out


def fine_detail(films: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Per film (n, s, s), the share of its spectral energy at DETAIL_CYCLES or more cycles per
    film; measured on the films at the model's input size."""
    return band_shares(films, ((DETAIL_CYCLES, np.inf),), chunk)[:, 0]


def value_format(statistic: str) -> str:
    """How a statistic's values are written: fine detail is a small share."""
    return "{:.3f}" if statistic == "detail" else "{:.1f}"


def film_statistics(films: np.ndarray) -> pd.DataFrame:
    """One row per film (n, s, s uint8, as the model reads them); none for no films."""
    flat = films.reshape(len(films), int(np.prod(films.shape[1:]))).astype(np.float32)
    return pd.DataFrame({"brightness": flat.mean(axis=1), "contrast": flat.std(axis=1),
                         "detail": fine_detail(films)})


def columns(frame: pd.DataFrame) -> pd.DataFrame:
    """The statistics of a frame of films (scored predictions, a film table), indexed 0..n-1 as
    `compare` and the plots read them."""
    return frame[list(STATISTICS)].reset_index(drop=True)


def _groups(y: np.ndarray | None, n: int) -> dict[str, np.ndarray]:
    masks = {"all": np.ones(n, dtype=bool)}
    if y is not None:
        masks.update({label: np.asarray(y) == i for i, label in enumerate(LABELS)})
    return {g: m for g, m in masks.items() if m.any()}


def reference(stats: pd.DataFrame, y: np.ndarray) -> dict:
    """The training films' percentiles (0-100) of every statistic, overall and per class: small
    enough for the model card, fine enough to compare a cohort with."""
    groups = _groups(y, len(stats))
    return {
        "definitions": {**STATISTICS, "detail_cycles": DETAIL_CYCLES},
        "films": {g: int(m.sum()) for g, m in groups.items()},
        "percentiles": {s: {g: [float(f"{v:.5g}") for v in np.percentile(stats[s].to_numpy()[m], PERCENTILES)]
                            for g, m in groups.items()} for s in STATISTICS},
    }


def training_reference(table: pd.DataFrame) -> dict:
    """The reference of the training split's films, from the profile's film table."""
    train = table[table["split"] == "train"].reset_index(drop=True)
    return reference(train, (train["label"] == LABELS[1]).to_numpy(int))


def compare(ref: dict, stats: pd.DataFrame, y: np.ndarray | None = None,
            called: np.ndarray | None = None) -> pd.DataFrame:
    """Per statistic and group (all; each class when labels are given): the training films' and
    the cohort's median and quartiles, and the Kolmogorov-Smirnov distance between the two (the
    largest gap between their cumulative shares; the training side read from its percentiles).
    The "all" group is set against the training classes mixed in the share the model called
    PNEUMONIA (`called`, one flag per film) when given, else in the training films' own share: an
    unlabelled batch's mix of classes would otherwise move its figures by itself.
    `shifted`: the distance exceeds both its 5 % critical value for this many films and 0.1, a
    tenth of the films displaced (a large cohort makes any difference significant)."""
    share = float(np.mean(called)) if called is not None and len(called) else None
    rows = []
    for group, mask in _groups(y, len(stats)).items():
        for name in STATISTICS:
            parts = _parts(ref, name, group, share)
            values = np.sort(stats[name].to_numpy(float)[mask])
            values = values[np.isfinite(values)]
            if parts is None or not len(values):
                continue
            n = len(values)
            ks = ks_distance(values, *parts)
            critical = 1.36 / np.sqrt(n)
            q = np.percentile(values, [25, 50, 75])
            t = _quantiles(*parts, (0.25, 0.5, 0.75))
            rows.append({"statistic": name, "group": group, "films": n,
                         "training_pneumonia_share": _pneumonia_share(ref, group, parts),
                         "training_median": t[1], "training_q1": t[0], "training_q3": t[2],
                         "cohort_median": q[1], "cohort_q1": q[0], "cohort_q3": q[2],
                         "ks": ks, "ks_critical": float(critical), "shifted": bool(ks > max(critical, 0.1))})
    return pd.DataFrame(rows, columns=["statistic", "group", "films", "training_pneumonia_share", "training_median",
                                       "training_q1", "training_q3", "cohort_median", "cohort_q1", "cohort_q3",
                                       "ks", "ks_critical", "shifted"])


def _parts(ref: dict, statistic: str, group: str, share: float | None = None
           ) -> tuple[np.ndarray, np.ndarray] | None:
    """The training side of a comparison: percentile rows (k, 101) and their weights. A class is
    its own row; "all" is the two classes mixed in `share` PNEUMONIA (default: the training films'
    share), or the pooled percentiles of a card that has no class rows."""
    per = ref.get("percentiles", {}).get(statistic, {})
    if group == "all" and all(label in per for label in LABELS):
        films = ref.get("films", {})
        if share is None or not np.isfinite(share):
            share = films.get(LABELS[1], 0) / max(films.get(LABELS[0], 0) + films.get(LABELS[1], 0), 1)
        return np.array([per[LABELS[0]], per[LABELS[1]]], dtype=float), np.array([1.0 - share, share])
    pct = per.get(group)
    return None if pct is None else (np.array([pct], dtype=float), np.ones(1))


def _pneumonia_share(ref: dict, group: str, parts: tuple[np.ndarray, np.ndarray]) -> float:
    if group in LABELS:
        return float(LABELS.index(group))
    return float(parts[1][1]) if len(parts[1]) == 2 else float("nan")


def reference_curve(ref: dict, statistic: str, group: str, share: float | None = None
                    ) -> tuple[np.ndarray, np.ndarray] | None:
    """The training films' cumulative share at each value, as a comparison reads it: for plots."""
    parts = _parts(ref, statistic, group, share)
    if parts is None:
        return None
    grid = np.unique(parts[0])
    return grid, training_cdf(grid, *parts)


def _quantiles(pct: np.ndarray, weights: np.ndarray, shares: tuple[float, ...]) -> np.ndarray:
    if len(pct) == 1:
        return np.interp(shares, PERCENTILES / 100.0, pct[0])
    grid = np.unique(pct)
    return np.interp(shares, training_cdf(grid, pct, weights), grid)


def per_class(shift: pd.DataFrame) -> pd.DataFrame:
    """The rows to read: each class's, when the cohort was labelled (a whole cohort's mix of classes
    moves its "all" rows by itself), else the whole cohort's."""
    by_class = shift["group"] != "all"
    return shift[by_class] if by_class.any() else shift


def differing(shift: pd.DataFrame) -> pd.DataFrame:
    """The rows of `per_class` whose distributions differ: what a reader is told about."""
    rows = per_class(shift)
    return rows[rows["shifted"].astype(bool)]


def _class_cdf(x: np.ndarray, pct: np.ndarray, side: str) -> np.ndarray:
    """Share of one group's training films at or below x ("right"), or below x ("left"), read from
    its percentiles: linear between them, a step where several percentiles tie (a repeated value)."""
    shares = PERCENTILES / 100.0
    j = np.searchsorted(pct, x, side=side) - 1
    inside = (j >= 0) & (j < len(pct) - 1)
    k = np.clip(j, 0, len(pct) - 2)
    lo, hi = pct[k], pct[k + 1]
    step = np.where(hi > lo, (x - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0)
    cdf = shares[k] + np.clip(step, 0.0, 1.0) * (shares[k + 1] - shares[k])
    return np.where(j < 0, 0.0, np.where(inside, cdf, 1.0))


def training_cdf(x: np.ndarray, pct: np.ndarray, weights: np.ndarray | None = None,
                 side: str = "right") -> np.ndarray:
    """The training films' cumulative share at x from percentile rows (101 values, or (k, 101)
    mixed in `weights`)."""
    pct = np.atleast_2d(pct)
    weights = np.ones(1) if weights is None else np.asarray(weights, dtype=float)
    return sum(w * _class_cdf(x, row, side) for row, w in zip(pct, weights))


def ks_distance(values: np.ndarray, pct: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Kolmogorov-Smirnov distance between sorted cohort values and the training percentiles (a
    row of 101, or rows mixed in `weights`), checked on both sides of every point where either
    distribution steps."""
    grid = np.union1d(values, pct)
    n = len(values)
    return float(max(np.abs(np.searchsorted(values, grid, side) / n - training_cdf(grid, pct, weights, side)).max()
                     for side in ("right", "left")))


def describe(row: pd.Series) -> str:
    """One line for a statistic of one group: where the cohort sits against training (for a whole
    unlabelled batch, the training classes mixed in the share the model called PNEUMONIA)."""
    fmt = value_format(row["statistic"])
    span = lambda a, b, c: f"{fmt.format(a)} ({fmt.format(b)}-{fmt.format(c)})"  # noqa: E731
    share = row.get("training_pneumonia_share", float("nan"))
    mixed = f" ({share:.0%} PNEUMONIA)" if row["group"] == "all" and np.isfinite(share) else ""
    return (f"{row['statistic']} of {row['group']} films: cohort {span(row['cohort_median'], row['cohort_q1'], row['cohort_q3'])}"
            f" vs training{mixed} {span(row['training_median'], row['training_q1'], row['training_q3'])} (median, "
            f"quartiles), Kolmogorov-Smirnov distance {row['ks']:.2f}")
