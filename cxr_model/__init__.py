"""cxr: pneumonia detection on pediatric chest X-rays, as a plain library (no Prefect, no DVC)."""

import os

# Keras on TensorFlow, without TensorFlow's start-up chatter; set before anything imports it.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from cxr_model import quiet_tensorflow  # noqa: E402  (after the variables it complements)

quiet_tensorflow.install()

__version__ = "0.1.0"
