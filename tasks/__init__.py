"""Prefect tasks: thin wrappers, one per pipeline step, around cxr_model.steps."""
