"""Profile of the data per split and class: counts, sizes, film statistics, samples, duplicates."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_model import film_stats, plots
from cxr_model.data import LABELS, SPLITS, pneumonia_type

log = logging.getLogger("cxr.profiling")


def counts_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """Images per split (rows) and label (columns), with totals, the pneumonia share and, where the
    file names tell, pneumonia films per type (a split short of viral films would flatter the model)."""
    table = (
        manifest.groupby(["split", "label"]).size().unstack(fill_value=0)
        .reindex(index=list(SPLITS), columns=list(LABELS), fill_value=0)
    )
    table["total"] = table.sum(axis=1)
    table["pneumonia_share"] = (table[LABELS[1]] / table["total"].where(table["total"] > 0)).round(4)
    table["patients"] = manifest.groupby("split")["patient_id"].nunique().reindex(list(SPLITS), fill_value=0)
    kinds = manifest["path"].map(pneumonia_type).where(manifest["label"] == LABELS[1], "")
    for kind in sorted(set(kinds) - {""}):
        per_split = (kinds == kind).groupby(manifest["split"]).sum()
        table[f"pneumonia_{kind}"] = per_split.reindex(list(SPLITS), fill_value=0)
    return table


def duplicate_groups(duplicates: pd.DataFrame) -> pd.DataFrame:
    """One row per group of identical files: the kept file, the dropped ones and why."""
    columns = ["sha256", "files", "kept_path", "dropped_paths", "reason"]
    if duplicates.empty:
        return pd.DataFrame(columns=columns)
    groups = duplicates.groupby(["sha256", "kept_path"], sort=True).agg(
        dropped_paths=("dropped_path", lambda s: "; ".join(sorted(s))),
        reason=("reason", lambda s: "; ".join(sorted(set(s)))),
        dropped=("dropped_path", "size"),
    ).reset_index()
    groups["files"] = groups["dropped"] + 1
    return groups[columns].sort_values(["files", "kept_path"], ascending=[False, True]).reset_index(drop=True)


def film_table(manifest: pd.DataFrame, pixels: np.ndarray) -> pd.DataFrame:
    """Each film's brightness, contrast and fine detail as the model reads it (film_stats), with
    its split and label: the table the registered model's training-film reference is taken from."""
    return pd.concat([manifest[["path", "split", "label"]].reset_index(drop=True),
                      film_stats.film_statistics(pixels).round(5)], axis=1)


def split_shift(table: pd.DataFrame) -> pd.DataFrame:
    """The validation and test films against the training films, per class (film_stats.compare,
    with a `split` column): test figures measured on films unlike the training films measure
    how the model transfers, and the reader should know."""
    ref = film_stats.training_reference(table)
    frames = []
    for split in ("val", "test"):
        part = table[table["split"] == split].reset_index(drop=True)
        if len(part):
            y = (part["label"] == LABELS[1]).to_numpy(int)
            frames.append(film_stats.compare(ref, part, y).assign(split=split))
    return pd.concat(frames, ignore_index=True) if frames else film_stats.compare(ref, table.iloc[:0]).assign(split="")


def write_profile(
    manifest: pd.DataFrame, duplicates: pd.DataFrame, pixels: np.ndarray | None, out_dir: Path, seed: int = 0
) -> dict[str, Path]:
    """Write tables (CSV, Markdown) and charts; `pixels` are the manifest's decoded images, in order."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table = counts_table(manifest)
    files = {
        "counts_csv": out_dir / "class_counts.csv",
        "counts_md": out_dir / "class_counts.md",
        "chart": out_dir / "class_distribution.png",
        "sizes": out_dir / "image_sizes.png",
        "duplicates_csv": out_dir / "duplicate_groups.csv",
    }
    table.to_csv(files["counts_csv"], index_label="split")
    files["counts_md"].write_text(table.to_markdown() + "\n")
    plots.class_distribution(table[list(LABELS)], files["chart"])
    plots.size_histograms(manifest, files["sizes"])
    duplicate_groups(duplicates).to_csv(files["duplicates_csv"], index=False)
    if pixels is not None and len(pixels):
        stats = film_table(manifest, pixels)
        files["film_stats_csv"] = out_dir / "film_stats.csv"
        stats.to_csv(files["film_stats_csv"], index=False)
        files["film_stats"] = plots.film_statistics(stats, out_dir / "film_stats.png")
        if (stats["split"] == "train").any():
            files["split_shift_csv"] = out_dir / "split_shift.csv"
            shift = split_shift(stats)
            shift.to_csv(files["split_shift_csv"], index=False)
            for row in film_stats.differing(shift).itertuples():
                log.warning("profile: the %s split's %s films differ from the training films in %s (Kolmogorov-"
                            "Smirnov distance %.2f; split_shift.csv): read that split's figures with this in mind",
                            row.split, row.group, row.statistic, row.ks)
        files["samples"] = plots.sample_grid(manifest, pixels, out_dir / "samples.png", seed=seed)
    return files
