"""The ingest stage, and the dataset import before it (a DVC import, not a dvc.yaml stage)."""

from __future__ import annotations

import json

from cxr_model.config import Config
from cxr_model.errors import DataError
from cxr_model.stages.common import log, step, write_json


@step("import-data")
def import_data(cfg: Config) -> dict:
    """Bring the landing folder in as a DVC dataset version (a no-op when nothing changed)."""
    from cxr_model import versioning

    return versioning.import_landing(cfg)


@step("ingest")
def ingest(cfg: Config) -> dict:
    """Scan the dataset into the manifest, the duplicate report and a summary."""
    from cxr_model import data, versioning

    lay = cfg.layout
    source = cfg.data_source
    if cfg.data.versioned and not source.exists():
        raise DataError(f"versioned dataset {source} not found: run `cxr import-data` (or `make data`) "
                        f"to bring in the landing folder {cfg.landing}")
    manifest, duplicates = data.build_manifest(
        source, cfg.data.extensions, cfg.data.val_fraction, cfg.data.seed, cfg.data.max_image_pixels,
        index_path=lay.cache_dir / "ingest_index.csv",
    )
    lay.manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.to_csv(lay.manifest, index=False)
    duplicates.to_csv(lay.duplicates, index=False)
    summary = {**data.summarize(manifest), "source": cfg.recorded(source), "duplicates_dropped": len(duplicates),
               "dvc_version": versioning.dataset_version(cfg)}
    write_json(lay.ingest_summary, summary)
    log.info("ingest: %s", json.dumps(summary["counts"]))
    return summary
