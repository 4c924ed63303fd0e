"""Log the trained model to the MLflow run and register it as a new version."""

from __future__ import annotations

import logging
from importlib.metadata import version as installed_version

import numpy as np
import mlflow
from mlflow import MlflowClient
from mlflow.models import infer_signature

log = logging.getLogger("cxr.registry")


def _requirements() -> list[str]:
    """Exact versions of what the model needs to load, so serving does not guess."""
    return [f"{pkg}=={installed_version(pkg)}" for pkg in ("tensorflow-cpu", "keras", "numpy")]


def log_and_register(
    model, sample: np.ndarray, registered_model: str, threshold: float, tags: dict[str, str]
) -> tuple[str, str]:
    """Log the Keras model (signature, threshold) in the active run; return (model uri, version)."""
    x = sample.astype(np.float32)
    signature = infer_signature(x, model.predict(x, verbose=0))
    info = mlflow.keras.log_model(
        model,
        name="model",
        signature=signature,
        pip_requirements=_requirements(),
        metadata={"threshold": threshold, **tags},
        registered_model_name=registered_model,
    )
    version = str(info.registered_model_version)
    client = MlflowClient()
    for key, value in {"threshold": str(threshold), **tags}.items():
        client.set_model_version_tag(registered_model, version, key, value)
    client.update_model_version(
        registered_model, version,
        description=(f"Pneumonia-vs-normal CNN on pediatric frontal chest X-rays; decision threshold "
                     f"{threshold:.4f} chosen on the patient-grouped validation split. "
                     "Decision support only."),
    )
    log.info("registry: registered %s version %s (%s)", registered_model, version, info.model_uri)
    return info.model_uri, version
