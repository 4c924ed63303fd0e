"""The registered model's code (MLflow "models from code"): MLflow copies this file into every
model version it logs and runs it when the version is loaded, instead of unpickling an object."""

import mlflow

from cxr_model.serving import CxrPyfunc

mlflow.models.set_model(CxrPyfunc())
