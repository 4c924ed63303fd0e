"""Shared fixtures: synthetic X-ray-like datasets in the Kaggle layout and isolated params."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = (ROOT / ".." / "shared" / "data" / "chest_xray").resolve()


def synthetic_xray(seed: int, label: str, size: int = 48) -> Image.Image:
    """A grayscale image whose texture depends on the label, so a model can learn it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = 90 + 60 * np.exp(-((xx - 0.5) ** 2 + (yy - 0.5) ** 2) * 6)
    if label == "PNEUMONIA":
        base += 50 * (np.sin(xx * 25 + rng.uniform(0, 6)) > 0.3)
    img = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(img, mode="L")


def grey_films(n: int = 3, size: int = 32, levels: int = 100) -> np.ndarray:
    """Integer films (n, size, size, 1) using `levels` grey levels, with a black border as after a shift."""
    x = np.random.default_rng(0).integers(0, levels, (n, size, size, 1)).astype("float32")
    x[:, :4] = 0
    return x


def normal_name(patient: int, image: int) -> str:
    return f"IM-{patient:04d}-{image:04d}.jpeg"


def pneumonia_name(patient: int, image: int) -> str:
    return f"person{patient}_{'virus' if patient % 3 == 0 else 'bacteria'}_{image}.jpeg"


def mlflow_client(uri: str):
    """A client bound to one store for tracking and registry (never the process-wide default)."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def make_dataset(
    root: Path,
    normal_patients: int = 12,
    pneumonia_patients: int = 12,
    images_per_patient: int = 2,
    test_patients: int = 5,
    size: int = 48,
    seed: int = 0,
) -> Path:
    """Write a small dataset in the Kaggle layout; every image is distinct."""
    counter = seed * 100_000
    for split, patients in (("train", (normal_patients, pneumonia_patients)), ("test", (test_patients,) * 2)):
        for label, n, namer in (("NORMAL", patients[0], normal_name), ("PNEUMONIA", patients[1], pneumonia_name)):
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for p in range(1, n + 1):
                for i in range(1, images_per_patient + 1):
                    counter += 1
                    synthetic_xray(counter, label, size).save(folder / namer(p, i), quality=95)
    return root


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "landing")


def write_params(folder: Path, source: Path, **overrides: dict) -> Path:
    """params.yaml from the project's own, reading `source` in place, with small-run settings."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["landing"] = str(source)
    params["data"]["versioned"] = False
    params["validate"]["min_images_per_class"] = 2
    params["validate"]["min_side"] = 32
    params["predict"]["min_side"] = 32
    params["preprocess"]["image_size"] = 32
    params["model"]["filters"] = [8, 16]
    params["model"]["dense_units"] = 16
    params["train"]["epochs"] = 1
    params["train"]["batch_size"] = 16
    params["promote"].update(min_val_auc=0.0, min_val_sensitivity=0.0,  # tiny models: gates tested apart
                             max_probe_ratio=0.0, max_aspect_jitter_drop=0.0)
    params["mlflow"]["tracking_uri"] = "sqlite:///mlruns/mlflow.db"
    params["mlflow"]["artifact_root"] = "mlruns/artifacts"
    for section, values in overrides.items():
        if isinstance(values, dict):
            params[section].update(values)
        else:
            params[section] = values
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


_USER_SETTINGS = ("CXR_DATA", "CXR_PARAMS", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
# Tests never read a user's CXR_* or MLflow settings, not even in module or session fixtures.
for _name in _USER_SETTINGS:
    os.environ.pop(_name, None)
os.environ["GX_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(autouse=True)
def _isolated_env():
    """mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI; drop it so it cannot leak into later tests."""
    yield
    for name in _USER_SETTINGS:
        os.environ.pop(name, None)
