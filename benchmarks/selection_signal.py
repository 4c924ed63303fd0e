"""Could any validation figure have ranked the configurations tried by their test figures?

    python -m benchmarks.selection_signal            # every row of benchmarks/experiments.jsonl

Every configuration was chosen on validation (results.md). This measures, after the fact and
deciding nothing, how well each validation signal the rules read agrees with the test figures
over all recorded runs: Spearman rank correlation with a bootstrap 95 % interval that resamples
configurations (a configuration's seeds are not independent runs), and how much of the spread
in test figures is seed-to-seed noise (runs differing only in train.seed). A signal whose
correlation interval spans 0 could not have picked the better test model, however carefully
the rules were written.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from benchmarks.experiment import RESULTS, largest_probe, read_rows


def _minus_largest_probe(r: dict) -> float | None:
    largest = largest_probe(r)
    return None if largest is None else -largest[1]


SIGNALS = {  # name -> value from a row, higher meaning "the rules prefer it"
    "val AUC": lambda r: r["val_auc"],
    "val AUC viral": lambda r: r.get("val_auc_by_type", {}).get("virus"),
    "val AUC aspect-jittered": lambda r: r.get("val_aspect_jitter_auc"),
    "minus largest probe": _minus_largest_probe,
}
OUTCOMES = {
    "test AUC": lambda r: r["test"]["auc"],
    "test acc": lambda r: r["test"]["accuracy"],
    "test spec": lambda r: r["test"]["specificity"],
}


def rank_agreement(x: np.ndarray, y: np.ndarray, groups: list[str], resamples: int = 2000,
                   seed: int = 0) -> dict:
    """Spearman's rho of x and y, with a percentile bootstrap interval that draws whole groups."""
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    members = defaultdict(list)
    for i, g in enumerate(np.asarray(groups)[keep]):
        members[g].append(i)
    clusters = list(members.values())
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        idx = np.concatenate([clusters[k] for k in rng.integers(0, len(clusters), len(clusters))])
        if np.ptp(x[idx]) > 0 and np.ptp(y[idx]) > 0:
            draws.append(spearmanr(x[idx], y[idx]).statistic)
    low, high = np.percentile(draws, [2.5, 97.5])
    return {"rho": float(spearmanr(x, y).statistic), "low": float(low), "high": float(high),
            "runs": int(len(x)), "configurations": len(clusters)}


def configuration(row: dict) -> str:
    """The configuration a run belongs to: its name without a seed suffix (LRU2-S43 is LRU2)."""
    return re.sub(r"-S\d+$", "", row["name"])


def seed_share(rows: list[dict], outcome) -> dict:
    """Pooled seed-to-seed variance (configurations run on several seeds) against the variance
    over all runs: near 1, the spread between configurations is mostly the seed's luck."""
    groups = defaultdict(list)
    for r in rows:
        groups[configuration(r)].append(outcome(r))
    repeated = [np.asarray(v) for v in groups.values() if len(v) > 1]
    within = sum(((v - v.mean()) ** 2).sum() for v in repeated) / sum(len(v) - 1 for v in repeated)
    total = float(np.var([outcome(r) for r in rows], ddof=1))
    return {"configurations": len(repeated), "runs": sum(len(v) for v in repeated),
            "seed_sd": float(np.sqrt(within)), "all_sd": float(np.sqrt(total)), "share": float(within / total)}


def report(rows: list[dict], resamples: int = 2000) -> str:
    """Markdown: one agreement row per signal and outcome, then the seed-noise shares."""
    lines = ["| validation signal | test figure | runs (configurations) | Spearman rho (95 % CI) |",
             "|---|---|---|---|"]
    groups = [configuration(r) for r in rows]
    for s_name, signal in SIGNALS.items():
        x = np.array([np.nan if v is None else v for v in map(signal, rows)], dtype=float)
        if (~np.isnan(x)).sum() < 4:  # recorded by too few runs (a signal added later) to rank
            continue
        for o_name, outcome in OUTCOMES.items():
            a = rank_agreement(x, np.array([outcome(r) for r in rows], dtype=float), groups, resamples)
            lines.append(f"| {s_name} | {o_name} | {a['runs']} ({a['configurations']}) "
                         f"| {a['rho']:+.2f} ({a['low']:+.2f} to {a['high']:+.2f}) |")
    lines += ["", "| figure | configurations on several seeds | their runs | seed-to-seed SD | SD over all runs "
              "| seed share of the variance |", "|---|---|---|---|---|---|"]
    for o_name, outcome in {"val AUC": SIGNALS["val AUC"], **OUTCOMES}.items():
        s = seed_share(rows, outcome)
        lines.append(f"| {o_name} | {s['configurations']} | {s['runs']} | {s['seed_sd']:.4f} | {s['all_sd']:.4f} "
                     f"| {s['share']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=RESULTS, help="experiments.jsonl to read")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap draws per interval")
    args = parser.parse_args(argv)
    if args.resamples < 1:
        parser.error("--resamples must be at least 1")
    rows = read_rows(args.results)
    if len(rows) < 4:
        raise SystemExit(f"{args.results}: {len(rows)} runs recorded; rank agreement needs at least 4")
    print(report(rows, args.resamples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
