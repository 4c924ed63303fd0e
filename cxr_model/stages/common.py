"""What every pipeline stage shares: reading and writing its declared files, the step wrapper
(timing, logging, a FAILED MLflow run on error) and the decoded arrays. Every stage in dvc.yaml
depends on this file."""

from __future__ import annotations

import functools
import json
import logging
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from cxr_model.config import Config
from cxr_model.errors import MissingInput

log = logging.getLogger("cxr.steps")
# The evaluate lines that quote the test split: an experiment judged blind silences this logger.
test_log = logging.getLogger("cxr.steps.test_figures")


def write_json(path: Path, payload: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    tmp.replace(path)
    return path


def require(path: Path) -> Path:
    """An earlier step's output; when it is missing, the error names the step to run first."""
    if not path.exists():
        raise MissingInput(f"{path} not found (run the {path.parent.name} step first)")
    return path


def read_json(path: Path) -> dict:
    return json.loads(require(path).read_text())


def evidence(cfg: Config) -> list[Path]:
    """Small outputs worth attaching to a failed run."""
    lay = cfg.layout
    return [lay.ingest_summary, lay.duplicates, lay.validation_result, lay.profile_dir]


def step(name: str) -> Callable:
    """Time a step, log it, and record a FAILED MLflow run if it raises."""

    def wrap(fn: Callable[[Config], dict]) -> Callable[[Config], dict]:
        @functools.wraps(fn)
        def run(cfg: Config) -> dict:
            log.info("%s: started", name)
            start = time.perf_counter()
            try:
                result = fn(cfg)
            except Exception as exc:
                from cxr_model import tracking

                tracking.record_failure(cfg, name, exc, evidence(cfg))
                raise
            seconds = time.perf_counter() - start
            log.info("%s: done in %.1f s", name, seconds)
            return {**result, "seconds": round(seconds, 2)}

        return run

    return wrap


def readable(manifest: pd.DataFrame) -> pd.DataFrame:
    """The manifest's readable rows, numbered 0..n-1 as readable_pixels returns them."""
    return manifest[manifest["error"] == ""].reset_index(drop=True)


def readable_pixels(cfg: Config, manifest: pd.DataFrame, size: int | None = None) -> np.ndarray:
    """The decoded films of the manifest's readable rows, in order, at `size` (default: the
    configured input size; a champion's own size when it differs), decoded once, then cached."""
    from cxr_model import preprocess

    return preprocess.decoded_pixels(readable(manifest), cfg.data_source, size or cfg.preprocess.image_size,
                                     cfg.data.max_image_pixels, cfg.layout.cache_dir)


def split_arrays(cfg: Config) -> dict:
    """The decoded films of the manifest by split (train, val, test), from the array cache."""
    from cxr_model import data, preprocess

    manifest = data.read_manifest(cfg.layout.manifest)
    return preprocess.load_arrays(
        manifest, cfg.data_source, cfg.preprocess.image_size, cfg.data.max_image_pixels, cfg.layout.cache_dir
    )
