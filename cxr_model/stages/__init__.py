"""The pipeline stages, one module each, so that dvc.yaml can name the code each stage runs."""
