"""The registered model as an MLflow pyfunc that takes image bytes and preprocesses them itself,
so `mlflow models serve` answers HTTP requests without any client-side preprocessing."""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path

import mlflow
import pandas as pd

from cxr_model.prediction import Prepared, Predictor

IMAGE_COLUMN = "image"
OUTPUT_COLUMNS = ("probability", "label", "threshold", "borderline", "error")


def payloads(model_input: pd.DataFrame, max_bytes: int) -> list[Prepared | bytes]:
    """Column `image`: base64 text (JSON requests) or raw bytes (Python callers)."""
    if IMAGE_COLUMN not in model_input.columns:
        raise mlflow.exceptions.MlflowException.invalid_parameter_value(
            f"input needs a column '{IMAGE_COLUMN}' holding base64-encoded image files")
    out: list[Prepared | bytes] = []
    for value in model_input[IMAGE_COLUMN]:
        if isinstance(value, (bytes, bytearray)):
            out.append(bytes(value))
        elif not isinstance(value, str) or not value:
            out.append(Prepared(error="empty input: expected a base64-encoded image file"))
        elif len(value) * 3 // 4 > max_bytes:  # refuse before decoding the base64 text
            out.append(Prepared(error=f"upload of about {len(value) * 3 // 4:,} bytes exceeds the "
                                      f"{max_bytes:,}-byte limit"))
        else:
            try:
                out.append(base64.b64decode(value, validate=True))
            except (binascii.Error, ValueError):
                out.append(Prepared(error="input is not valid base64"))
    return out


class CxrPyfunc(mlflow.pyfunc.PythonModel):
    """P(pneumonia), label at the stored threshold, or a per-image error reason."""

    def load_context(self, context) -> None:
        card_path = context.artifacts.get("model_card_json")
        card = json.loads(Path(card_path).read_text()) if card_path else {}
        self.predictor = Predictor.from_files(context.artifacts["keras_model"], context.artifacts["settings"], card)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        items = payloads(model_input, self.predictor.settings.max_image_bytes)
        return self.predictor.score(self.predictor.prepare_many(items))[list(OUTPUT_COLUMNS)]


def signature(sample_b64: list[str], sample_output: pd.DataFrame):
    """Input: one string column of base64 images; output: the scoring columns."""
    from mlflow.models import infer_signature

    return infer_signature(pd.DataFrame({IMAGE_COLUMN: sample_b64}), sample_output)


def resolve_uri(model: str | None, registered_model: str) -> str:
    """`None` -> the champion; `7` -> version 7; `@alias`; a path or any MLflow URI as given."""
    if model is None:
        return f"models:/{registered_model}@champion"
    if model.isdigit():
        return f"models:/{registered_model}/{model}"
    if model.startswith("@"):
        return f"models:/{registered_model}{model}"
    return model


def registered_version(client, uri: str) -> str | None:
    """The version number behind a models:/name/N or models:/name@alias URI (None otherwise): the
    card inside a model is written before its version exists, so the registry is asked."""
    if not uri.startswith("models:/"):
        return None
    name, sep, alias = uri[len("models:/"):].partition("@")
    if sep:
        return str(client.get_model_version_by_alias(name, alias).version)
    name, _, version = name.partition("/")
    return version if version.isdigit() else None


def load_predictor(uri: str, threshold: float | None = None, settings: dict | None = None) -> Predictor:
    """A Predictor from a registered/logged cxr pyfunc, or from a bare .keras file (then the
    threshold must be given; image size comes from the model's input)."""
    from cxr_model.config import PredictConfig
    from cxr_model.model import keras

    if uri.endswith(".keras") and Path(uri).is_file():
        model = keras.models.load_model(uri, compile=False)
        s = settings or {}
        return Predictor(model, 0.5 if threshold is None else threshold, int(model.input_shape[1]),
                         int(s.get("max_pixels", 50_000_000)), s.get("predict", PredictConfig()), {}, uri)
    loaded = mlflow.pyfunc.load_model(uri)
    try:
        predictor = loaded.unwrap_python_model().predictor
    except (AttributeError, mlflow.exceptions.MlflowException):
        raise ValueError(f"{uri} is not a cxr image model (no cxr pyfunc inside)") from None
    predictor.source = uri
    version = registered_version(mlflow.MlflowClient(), uri)
    if version:
        predictor.card = {**predictor.card, "version": version}
    if threshold is not None:
        predictor.threshold, predictor.band = threshold, None  # the stored interval was the stored threshold's
    return predictor
