"""Log the trained model as an image-bytes pyfunc in the MLflow run and register it."""

from __future__ import annotations

import base64
import json
import logging
from importlib.metadata import version as installed_version
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient

from cxr_model.model_card import render_markdown
from cxr_model.prediction import SETTINGS_FILE, Predictor

log = logging.getLogger("cxr.registry")


def _requirements() -> list[str]:
    """Exact versions of what the model needs to load; the cxr package itself must be installed
    too (serve from the project environment: `mlflow models serve --env-manager local`)."""
    pkgs = ("tensorflow-cpu", "keras", "numpy", "pandas", "pillow", "pydicom", "scipy", "mlflow")
    return [f"{pkg}=={installed_version(pkg)}" for pkg in pkgs]


def log_and_register(
    model_path: Path, predictor: Predictor, samples: list[bytes], card: dict, work_dir: Path,
    registered_model: str, tags: dict[str, str],
) -> tuple[str, str]:
    """Log the pyfunc (Keras weights, settings, model card) in the active run; return (uri, version)."""
    from cxr_model.serving import IMAGE_COLUMN, signature

    work_dir.mkdir(parents=True, exist_ok=True)
    settings = work_dir / SETTINGS_FILE
    settings.write_text(json.dumps(predictor.settings_dict(), indent=2))
    card_json, card_md = work_dir / "model_card.json", work_dir / "model_card.md"
    card_json.write_text(json.dumps(card, indent=2, default=str))
    card_md.write_text(render_markdown(card))
    b64 = [base64.b64encode(s).decode() for s in samples]
    threshold = predictor.threshold
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=str(Path(__file__).with_name("pyfunc_entry.py")),  # code, not a pickle
        artifacts={"keras_model": str(model_path), "settings": str(settings),
                   "model_card_json": str(card_json), "model_card_md": str(card_md)},
        signature=signature(b64, predictor.predict_bytes(samples)),
        input_example=pd.DataFrame({IMAGE_COLUMN: b64[:1]}),
        pip_requirements=_requirements(),
        metadata={"threshold": threshold, "image_size": predictor.image_size, **tags},
        registered_model_name=registered_model,
    )
    version = str(info.registered_model_version)
    client = MlflowClient()
    for key, value in {"threshold": str(threshold), **tags}.items():
        client.set_model_version_tag(registered_model, version, key, value)
    test = card["test_metrics"]
    client.update_model_version(
        registered_model, version,
        description=(f"Pneumonia-vs-normal CNN on pediatric frontal chest X-rays; decision support only. "
                     f"Threshold {threshold:.4f} chosen on the patient-grouped validation split. Test AUC "
                     f"{test['auc']:.3f}, sensitivity {test['sensitivity']:.3f}, specificity "
                     f"{test['specificity']:.3f}. Takes base64 image files (column 'image'); the model card "
                     "is in the model's artifacts (model_card.md)."),
    )
    log.info("registry: registered %s version %s (%s)", registered_model, version, info.model_uri)
    return info.model_uri, version
