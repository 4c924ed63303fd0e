"""The profile stage: class distribution, sizes and intensities per split."""

from __future__ import annotations

import pandas as pd

from cxr_model.config import Config
from cxr_model.stages.common import log, readable, readable_pixels, step


@step("profile")
def profile(cfg: Config) -> dict:
    """Counts, sizes, intensities, sample images and duplicate groups per split and class."""
    from cxr_model import data, profiling

    lay = cfg.layout
    manifest = data.read_manifest(lay.manifest)
    duplicates = pd.read_csv(lay.duplicates, keep_default_na=False)
    files = profiling.write_profile(readable(manifest), duplicates, readable_pixels(cfg, manifest), lay.profile_dir,
                                    seed=cfg.data.seed)
    log.info("profile:\n%s", files["counts_md"].read_text())
    return {"files": [str(p) for p in files.values()]}
