"""Shared e2e fixtures: a small real subset of the X-rays, and one finished training flow on it
that several modules (flow, prediction, serving) inspect."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cxr_model.config import load_config
from tests.conftest import REAL_DATA, ROOT, write_params


def real_subset(dest: Path, train_per_class: int = 40, test_per_class: int = 15) -> Path:
    """Copy an evenly spaced selection of real images into the Kaggle layout."""
    for split, n in (("train", train_per_class), ("test", test_per_class)):
        for label in ("NORMAL", "PNEUMONIA"):
            files = sorted((REAL_DATA / split / label).iterdir())
            step = max(1, len(files) // n)
            (dest / split / label).mkdir(parents=True)
            for f in files[::step][:n]:
                shutil.copy(f, dest / split / label / f.name)
    return dest


def run_flow(params: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CXR_", "MLFLOW_"))}
    return subprocess.run(
        [sys.executable, "-m", "flows.training", "--params", str(params)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )


def _small(tmp_path: Path, source: Path) -> Path:
    return write_params(tmp_path / "project", source, preprocess={"image_size": 64},
                        model={"filters": [8, 16, 32], "dense_units": 16})


@pytest.fixture(scope="session")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("flow")
    params = _small(tmp, real_subset(tmp / "landing"))
    proc = run_flow(params)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return load_config(params), proc


