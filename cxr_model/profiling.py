"""Class-distribution profile of the manifest: tables and charts per split."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cxr_model import plots
from cxr_model.data import LABELS, SPLITS


def counts_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """Images per split (rows) and label (columns), with totals and the pneumonia share."""
    table = (
        manifest.groupby(["split", "label"]).size().unstack(fill_value=0)
        .reindex(index=list(SPLITS), columns=list(LABELS), fill_value=0)
    )
    table["total"] = table.sum(axis=1)
    table["pneumonia_share"] = (table[LABELS[1]] / table["total"].where(table["total"] > 0)).round(4)
    table["patients"] = manifest.groupby("split")["patient_id"].nunique().reindex(list(SPLITS), fill_value=0)
    return table


def write_profile(manifest: pd.DataFrame, out_dir: Path) -> dict[str, Path]:
    """Write the counts table (CSV and Markdown) and the class-distribution chart."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table = counts_table(manifest)
    files = {
        "counts_csv": out_dir / "class_counts.csv",
        "counts_md": out_dir / "class_counts.md",
        "chart": out_dir / "class_distribution.png",
    }
    table.to_csv(files["counts_csv"], index_label="split")
    files["counts_md"].write_text(table.to_markdown() + "\n")
    plots.class_distribution(table[list(LABELS)], files["chart"])
    return files
